/* SPDX-License-Identifier: MIT */
/**
 * libpal: process spawning and fd plumbing for Linux, in plain C (libc only).
 * On Windows (_WIN32) the same concepts with Windows names where they
 * differ: pal-handle.h, pal-section.h and pal-spawn-win32.h replace the
 * fd, memfd, spawn and sandbox headers (doc/windows.md, "libpal on
 * Windows"); there, errors are negative Win32 error codes (-(int)GetLastError()).
 *
 * Error model: functions return 0 (or a non-negative value) on success and a
 * negative errno on failure; constructors return NULL and set errno. Out
 * parameters are named `ret_*`, come last and are not written on failure.
 *
 * Fd ownership is in the names: `_take` moves ownership of an fd into the
 * callee, also on failure (the fd is then closed); `_steal` moves it out to
 * the caller; everything else borrows or duplicates with F_DUPFD_CLOEXEC.
 * `_free` accepts NULL and returns NULL. Every fd libpal creates is
 * close-on-exec.
 *
 * Threads: an object may be used from one thread at a time; distinct objects
 * are independent. Functions that take only fds are thread-safe.
 */
#pragma once

#define __PAL_H_INSIDE__

#include <pal/pal-macros.h>
#ifdef _WIN32
#include <pal/pal-handle.h>
#include <pal/pal-section.h>
#include <pal/pal-spawn-win32.h>
#else
#include <pal/pal-fd.h>
#include <pal/pal-memfd.h>
#include <pal/pal-spawn.h>
#include <pal/pal-sandbox.h>
#endif

#undef __PAL_H_INSIDE__
