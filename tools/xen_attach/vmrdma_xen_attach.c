// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vmrdma-xen-attach: attach or detach a vmrdma device to a running Xen
 * domain, from dom0.  xl knows nothing of our device type and Debian's
 * hotplug scripts do nothing for it, so this tool writes both ends'
 * xenstore nodes (links, ids, permissions, state Initialising) in one
 * transaction; the backend (backend_kmod or vmrdmad --xen) and
 * frontend_kmod then run the handshake.  docs/xen.md, "Attaching a guest".
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xenstore.h>

#include "proto/xen.h"

enum { ST_UNKNOWN = 0, ST_INITIALISING = 1, ST_INITWAIT, ST_INITIALISED, ST_CONNECTED,
       ST_CLOSING, ST_CLOSED, ST_RECONFIGURING, ST_RECONFIGURED };

static const char *state_name(int s)
{
	static const char *const names[] = { "Unknown", "Initialising", "InitWait",
					     "Initialised", "Connected", "Closing",
					     "Closed", "Reconfiguring", "Reconfigured" };

	return s >= 0 && s <= ST_RECONFIGURED ? names[s] : "?";
}

struct paths {
	char fe[128]; /* /local/domain/D/device/vmrdma/0 */
	char be[128]; /* /local/domain/B/backend/vmrdma/D/0 */
};

static void make_paths(struct paths *p, unsigned int domid, unsigned int backend)
{
	snprintf(p->fe, sizeof(p->fe), "/local/domain/%u/device/%s/0", domid, VR_XEN_DEVICE_TYPE);
	snprintf(p->be, sizeof(p->be), "/local/domain/%u/backend/%s/%u/0", backend,
		 VR_XEN_DEVICE_TYPE, domid);
}

static bool exists(struct xs_handle *xs, const char *path)
{
	unsigned int len;
	char *v = xs_read(xs, XBT_NULL, path, &len);

	free(v);
	return v != NULL;
}

/* The state node under dir, or ST_UNKNOWN if absent. */
static int read_state(struct xs_handle *xs, const char *dir)
{
	char path[160];
	unsigned int len;
	char *v;
	int s;

	snprintf(path, sizeof(path), "%s/state", dir);
	v = xs_read(xs, XBT_NULL, path, &len);
	if (!v)
		return ST_UNKNOWN;
	s = atoi(v);
	free(v);
	return s;
}

static bool write_node(struct xs_handle *xs, xs_transaction_t t, const char *dir,
		       const char *key, const char *fmt, unsigned long value)
{
	char path[160], text[32];

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	snprintf(text, sizeof(text), fmt, value);
	return xs_write(xs, t, path, text, strlen(text));
}

static bool write_str(struct xs_handle *xs, xs_transaction_t t, const char *dir,
		      const char *key, const char *value)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_write(xs, t, path, value, strlen(value));
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Waits until done(fe state, be state) holds or `timeout` seconds pass,
 * printing each change.  Returns true if it held.
 */
static bool wait_states(struct xs_handle *xs, const struct paths *p, double timeout,
			bool (*done)(int fe, int be))
{
	double end = now_s() + timeout;
	int fe = -1, be = -1;
	char path[160];

	snprintf(path, sizeof(path), "%s/state", p->fe);
	xs_watch(xs, path, "fe");
	snprintf(path, sizeof(path), "%s/state", p->be);
	xs_watch(xs, path, "be");
	for (;;) {
		int nfe = read_state(xs, p->fe), nbe = read_state(xs, p->be);
		struct pollfd pfd = { .fd = xs_fileno(xs), .events = POLLIN };
		double left = end - now_s();

		if (nfe != fe || nbe != be) {
			fe = nfe;
			be = nbe;
			printf("  frontend %-12s backend %s\n", state_name(fe), state_name(be));
			fflush(stdout);
		}
		if (done(fe, be))
			return true;
		if (left <= 0)
			return false;
		if (poll(&pfd, 1, (int)(left * 1000) + 1) > 0) {
			unsigned int n;
			char **ev = xs_read_watch(xs, &n);

			free(ev);
		}
	}
}

static bool both_connected(int fe, int be)
{
	return fe == ST_CONNECTED && be == ST_CONNECTED;
}

static bool frontend_let_go(int fe, int be)
{
	(void)be;
	return fe == ST_CLOSED || fe == ST_UNKNOWN || fe == ST_INITIALISING;
}

static int attach(struct xs_handle *xs, unsigned int domid, unsigned int backend,
		  long weight, double wait)
{
	struct xs_permissions fe_perms[2] = { { .id = domid, .perms = XS_PERM_NONE },
					      { .id = backend, .perms = XS_PERM_READ } };
	struct xs_permissions be_perms[2] = { { .id = backend, .perms = XS_PERM_NONE },
					      { .id = domid, .perms = XS_PERM_READ } };
	struct paths p;
	char dompath[64];

	make_paths(&p, domid, backend);
	snprintf(dompath, sizeof(dompath), "/local/domain/%u/name", domid);
	if (!exists(xs, dompath)) {
		fprintf(stderr, "vmrdma-xen-attach: no domain %u (see xl list)\n", domid);
		return 1;
	}
	if (exists(xs, p.fe) || exists(xs, p.be)) {
		fprintf(stderr, "vmrdma-xen-attach: domain %u already has a vmrdma device (%s); "
			"detach it first\n", domid, exists(xs, p.fe) ? p.fe : p.be);
		return 1;
	}
	for (;;) {
		xs_transaction_t t = xs_transaction_start(xs);
		bool ok;

		if (t == XBT_NULL) {
			perror("vmrdma-xen-attach: xenstore transaction");
			return 1;
		}
		ok = xs_mkdir(xs, t, p.fe) && xs_set_permissions(xs, t, p.fe, fe_perms, 2) &&
		     write_str(xs, t, p.fe, "backend", p.be) &&
		     write_node(xs, t, p.fe, "backend-id", "%lu", backend) &&
		     write_node(xs, t, p.fe, "state", "%lu", ST_INITIALISING) &&
		     xs_mkdir(xs, t, p.be) && xs_set_permissions(xs, t, p.be, be_perms, 2) &&
		     write_str(xs, t, p.be, "frontend", p.fe) &&
		     write_node(xs, t, p.be, "frontend-id", "%lu", domid) &&
		     write_node(xs, t, p.be, "online", "%lu", 1) &&
		     (weight < 0 || write_node(xs, t, p.be, VR_XEN_KEY_WEIGHT, "%lu",
						(unsigned long)weight)) &&
		     write_node(xs, t, p.be, "state", "%lu", ST_INITIALISING);
		if (!ok) {
			int e = errno;

			xs_transaction_end(xs, t, true);
			fprintf(stderr, "vmrdma-xen-attach: writing xenstore: %s\n", strerror(e));
			return 1;
		}
		if (xs_transaction_end(xs, t, false))
			break;
		if (errno != EAGAIN) {
			perror("vmrdma-xen-attach: xenstore commit");
			return 1;
		}
	}
	printf("vmrdma-xen-attach: domain %u: %s <-> %s\n", domid, p.fe, p.be);
	if (wait <= 0)
		return 0;
	if (!wait_states(xs, &p, wait, both_connected)) {
		fprintf(stderr, "vmrdma-xen-attach: not connected after %.0f s (frontend %s, "
			"backend %s): is a backend (vmrdma_back or vmrdmad --xen) running in dom%u "
			"and vmrdma_front loaded in the (unpaused) guest?\n",
			wait, state_name(read_state(xs, p.fe)), state_name(read_state(xs, p.be)),
			backend);
		return 2;
	}
	printf("vmrdma-xen-attach: domain %u connected\n", domid);
	return 0;
}

/*
 * The backend directory goes first: its removal unregisters the backend's
 * xenbus device, which tears the frontend's state down in dom0 (rings and
 * grants unmapped).  The frontend sees its backend vanish and fails what it
 * had; then its own directory goes.
 */
static int detach(struct xs_handle *xs, unsigned int domid, unsigned int backend, double wait)
{
	struct paths p;
	bool fe, be;

	make_paths(&p, domid, backend);
	fe = exists(xs, p.fe);
	be = exists(xs, p.be);
	if (!fe && !be) {
		fprintf(stderr, "vmrdma-xen-attach: domain %u has no vmrdma device\n", domid);
		return 1;
	}
	if (be) {
		char parent[160];

		snprintf(parent, sizeof(parent), "/local/domain/%u/backend/%s/%u", backend,
			 VR_XEN_DEVICE_TYPE, domid);
		if (!xs_rm(xs, XBT_NULL, parent) && errno != ENOENT) {
			perror("vmrdma-xen-attach: removing the backend nodes");
			return 1;
		}
	}
	if (fe && wait > 0 && !wait_states(xs, &p, wait, frontend_let_go))
		fprintf(stderr, "vmrdma-xen-attach: the frontend did not close within %.0f s; "
			"removing its nodes anyway\n", wait);
	if (fe && !xs_rm(xs, XBT_NULL, p.fe) && errno != ENOENT) {
		perror("vmrdma-xen-attach: removing the frontend nodes");
		return 1;
	}
	printf("vmrdma-xen-attach: domain %u detached\n", domid);
	return 0;
}

static int status(struct xs_handle *xs, unsigned int backend)
{
	char dir[96];
	unsigned int n, i;
	char **doms;

	snprintf(dir, sizeof(dir), "/local/domain/%u/backend/%s", backend, VR_XEN_DEVICE_TYPE);
	doms = xs_directory(xs, XBT_NULL, dir, &n);
	if (!doms || n == 0) {
		printf("no vmrdma devices\n");
		free(doms);
		return 0;
	}
	printf("%-6s %-14s %-14s %s\n", "domid", "frontend", "backend", "mac");
	for (i = 0; i < n; i++) {
		struct paths p;
		char path[192];
		unsigned int len;
		char *mac;

		make_paths(&p, (unsigned int)strtoul(doms[i], NULL, 10), backend);
		snprintf(path, sizeof(path), "%s/%s", p.be, VR_XEN_KEY_MAC);
		mac = xs_read(xs, XBT_NULL, path, &len);
		printf("%-6s %-14s %-14s %s\n", doms[i], state_name(read_state(xs, p.fe)),
		       state_name(read_state(xs, p.be)), mac ? mac : "-");
		free(mac);
	}
	free(doms);
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: vmrdma-xen-attach attach DOMID [--wait SECONDS] [--weight N]\n"
		"       vmrdma-xen-attach detach DOMID [--wait SECONDS]\n"
		"       vmrdma-xen-attach status\n"
		"\n"
		"Run in dom0 (needs xenstored).  attach writes the frontend's and the backend's\n"
		"xenstore nodes for a vmrdma device of a running (or paused) domain; the backend\n"
		"(backend_kmod or vmrdmad --xen) and frontend_kmod then connect.  --wait waits\n"
		"until both ends are Connected (attach, default 0: do not wait; a paused guest\n"
		"cannot connect) or the frontend has closed (detach, default 10).\n"
		"--weight sets the domain's share of the NIC (1..1024, overriding the guest's\n"
		"weights and max-weight; default: the guest's own choice per endpoint).\n"
		"--backend-domid N (default 0) names the driver domain.\n"
		"Exit status: 0 done, 1 error, 2 attached but not connected in time.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "wait", required_argument, NULL, 'w' },
		{ "weight", required_argument, NULL, 'W' },
		{ "backend-domid", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double wait = -1;
	long weight = -1;
	unsigned long backend = 0, domid = 0;
	const char *cmd;
	struct xs_handle *xs;
	char *end;
	int c, rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'w':
			wait = strtod(optarg, &end);
			if (*end || wait < 0) {
				fprintf(stderr, "vmrdma-xen-attach: --wait wants seconds, not '%s'\n", optarg);
				return 1;
			}
			break;
		case 'W':
			weight = strtol(optarg, &end, 10);
			if (*end || weight < 1 || weight > 1024) {
				fprintf(stderr, "vmrdma-xen-attach: --weight wants 1..1024, not '%s'\n", optarg);
				return 1;
			}
			break;
		case 'b':
			backend = strtoul(optarg, &end, 10);
			if (*end || backend > 0x7fef) {
				fprintf(stderr, "vmrdma-xen-attach: bad --backend-domid '%s'\n", optarg);
				return 1;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 1;
	}
	cmd = argv[optind];
	if (strcmp(cmd, "status") != 0) {
		if (optind + 2 != argc) {
			usage(stderr);
			return 1;
		}
		domid = strtoul(argv[optind + 1], &end, 10);
		if (*end || domid == 0 || domid > 0x7fef || domid == backend) {
			fprintf(stderr, "vmrdma-xen-attach: bad DOMID '%s' (a guest's id, see xl list)\n",
				argv[optind + 1]);
			return 1;
		}
	}
	xs = xs_open(0);
	if (!xs) {
		perror("vmrdma-xen-attach: cannot reach xenstore (is this dom0 with xenstored running?)");
		return 1;
	}
	if (strcmp(cmd, "attach") == 0)
		rc = attach(xs, domid, backend, weight, wait < 0 ? 0 : wait);
	else if (strcmp(cmd, "detach") == 0)
		rc = detach(xs, domid, backend, wait < 0 ? 10 : wait);
	else if (strcmp(cmd, "status") == 0)
		rc = status(xs, backend);
	else {
		fprintf(stderr, "vmrdma-xen-attach: unknown command '%s'\n", cmd);
		usage(stderr);
		rc = 1;
	}
	xs_close(xs);
	return rc;
}
