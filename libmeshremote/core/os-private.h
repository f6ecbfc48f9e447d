/* SPDX-License-Identifier: MIT */
/*
 * The OS calls core/ and channels/ make, behind one interface (core/os.c):
 * Linux's on Linux, Win32's on Windows. Nothing else in those folders
 * includes an OS header or tests the platform.
 *
 * - OS resources (MeshOsHandle): an fd on Linux, a HANDLE on Windows.
 * - Events (OsEvent): a level-triggered readiness object a caller can poll:
 *   a nonblocking eventfd on Linux (readable while set), a manual-reset
 *   event on Windows (signalled while set). Set and cleared under the
 *   owner's lock; never blocks.
 * - Timers (OsTimer): a deadline a caller can poll: a timerfd on Linux, a
 *   manual-reset waitable timer on Windows; ready from the deadline on.
 *
 * Every object made here is close-on-exec (Linux) or not inheritable
 * (Windows).
 */
#pragma once

#include <glib.h>

#include "meshremote/meshremote.h"

/* A thread's id, unique among the process's live threads. */
guint64 os_thread_id(void);

/* Whether @tid (os_thread_id()) is the process's main thread. */
gboolean os_thread_is_main(guint64 tid);

/* Fills @buf from the OS random source; aborts if there is none. */
void os_random(void *buf, gsize size);

/* Whether @h is an open fd (Linux) or a valid handle (Windows). */
gboolean os_handle_is_open(MeshOsHandle h);

/* Closes @h (MESH_OS_HANDLE_INVALID: nothing); errno is preserved. */
void os_handle_close(MeshOsHandle h);

/*
 * OS resources in a message's list (MeshPayloadResources). Linux: fd
 * entries. Windows: HANDLE entries, and fd entries (C runtime descriptors,
 * from mesh_message_add_fd() or a typed message's Fd field), which become
 * HANDLEs when they leave for another node.
 */
/* Whether entry @i is an OS resource; if so, and @ret_open, whether it is open. */
gboolean os_resource_peek(const MeshPayloadResources *res, size_t i, gboolean *ret_open);
/* Entry @i's OS resource as a MeshOsHandle (the entry becomes NONE); INVALID if none. */
MeshOsHandle os_resource_steal(MeshPayloadResources *res, size_t i);
/* Appends @h (transfer full, also on failure): its index or a negative errno. */
int os_resource_append_take(MeshPayloadResources *res, MeshOsHandle h);
/* Moves entry @i of @src, an OS resource, to the end of @dst as it is: the index, or a negative errno. */
int os_resource_move(MeshPayloadResources *dst, MeshPayloadResources *src, size_t i);
/* Entry @i as an fd (the entry becomes NONE), or -EINVAL. Windows: a HANDLE
 * entry comes wrapped in a new C runtime descriptor (_open_osfhandle(): a
 * file, pipe or console; else -EINVAL and the entry stays). */
int os_resource_steal_fd(MeshPayloadResources *res, size_t i);
/* Whether @fd is an open fd (Windows: C runtime descriptor). */
gboolean os_fd_is_open(int fd);

/* What an OsEvent or OsTimer is: the public MeshOsHandle kind. */
typedef MeshOsHandle OsEvent;
typedef MeshOsHandle OsTimer;
#define OS_EVENT_NONE MESH_OS_HANDLE_INVALID

/* A new event, set if @ready; OS_EVENT_NONE and *@ret_errno (a negative errno) on failure. */
OsEvent os_event_new(gboolean ready, int *ret_errno);
/* Sets or clears @ev. */
void os_event_set(OsEvent ev);
void os_event_clear(OsEvent ev);

/*
 * A new timer, not armed. @realtime: the deadlines it is armed with are
 * wall-clock times (else CLOCK_MONOTONIC's, of this process).
 * OS_EVENT_NONE and *@ret_errno on failure.
 */
OsTimer os_timer_new(gboolean realtime, int *ret_errno);
/* Arms @t at the absolute time @ns (its clock's nanoseconds); at once if passed. */
void os_timer_arm_at(OsTimer t, gboolean realtime, gint64 ns);

/* Monotonic and wall-clock time, nanoseconds. */
gint64 os_monotonic_ns(void);
gint64 os_realtime_ns(void);
