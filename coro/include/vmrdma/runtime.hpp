// The whole runtime in one include.
#pragma once

#include "vmrdma/async_scope.hpp"
#include "vmrdma/error.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/eventfd.hpp"
#include "vmrdma/sync_wait.hpp"
#include "vmrdma/task.hpp"
#include "vmrdma/timeout.hpp"
#include "vmrdma/when_all.hpp"
