// The one mapping between engine statuses and errc (coro/src/engine_status):
// every errc that an operation can fail with crosses the ring (vmrdmad ->
// frontend) and comes back as itself; the NAK reason refines a status.
#include <doctest/doctest.h>

#include <cerrno>

#include "engine_status.hpp"
#include "vmrdma/error.hpp"

extern "C" {
#include "proto/wire.h"
}

using vmrdma::errc;
using vmrdma::detail::code_from_status;
using vmrdma::detail::status_from_code;

TEST_CASE("every errc with an engine status comes back as itself across the ring")
{
	for (errc e : {errc::timeout, errc::cancelled, errc::peer_gone, errc::remote_access, errc::bad_key,
		       errc::out_of_bounds, errc::access_denied, errc::no_such_endpoint,
		       errc::receiver_not_ready, errc::resources_exhausted, errc::invalid_argument,
		       errc::protocol_error, errc::shut_down, errc::refused}) {
		CAPTURE(static_cast<int>(e));
		auto st = status_from_code(make_error_code(e));
		CHECK(st.status < 0);
		CHECK((code_from_status(st.status, st.nak_reason) == e));
	}
}

TEST_CASE("the engine's statuses and NAK reasons")
{
	CHECK((code_from_status(-ETIMEDOUT) == errc::timeout));
	CHECK((code_from_status(-ECONNRESET) == errc::peer_gone));
	CHECK((code_from_status(-ENOTCONN) == errc::peer_gone));
	CHECK((code_from_status(-EACCES) == errc::bad_key));
	CHECK((code_from_status(-ENOBUFS) == errc::receiver_not_ready));
	CHECK((code_from_status(-ENOBUFS, VR_NAK_RNR) == errc::receiver_not_ready));
	CHECK((code_from_status(-ENOBUFS, VR_NAK_RESOURCES) == errc::resources_exhausted));
	CHECK((code_from_status(-EINVAL) == errc::invalid_argument));
	CHECK((code_from_status(-EINVAL, VR_NAK_INVALID) == errc::remote_access));
	CHECK((code_from_status(-ECONNREFUSED, VR_NAK_NO_EP) == errc::no_such_endpoint));
	CHECK((code_from_status(-ECONNREFUSED, VR_NAK_REJECTED) == errc::refused));
	CHECK((code_from_status(-ESHUTDOWN) == errc::shut_down));
	CHECK((code_from_status(-EBUSY) == errc::resources_exhausted)); // an endpoint id still closing
	// Not an engine status: an OS error, in the generic category.
	CHECK((code_from_status(-EBADF) == std::errc::bad_file_descriptor));
}

TEST_CASE("system errors cross as their errno; permission_denied as -EIO")
{
	CHECK(status_from_code(std::make_error_code(std::errc::bad_file_descriptor)).status == -EBADF);
	CHECK(status_from_code(make_error_code(errc::permission_denied)).status == -EIO);
	auto rnr = status_from_code(make_error_code(errc::receiver_not_ready));
	CHECK(rnr.status == -ENOBUFS);
	CHECK(rnr.nak_reason == VR_NAK_RNR);
	CHECK(status_from_code(make_error_code(errc::shut_down)).status == -ESHUTDOWN);
}
