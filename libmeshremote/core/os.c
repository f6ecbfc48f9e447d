/* SPDX-License-Identifier: MIT */
/* The OS calls of core/ and channels/ (os-private.h): Linux, then Windows. */
#include <errno.h>
#include <glib.h>

#ifdef G_OS_WIN32
#include <io.h>
#include <windows.h>
#include <bcrypt.h>
#else
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#endif

#include "os-private.h"
#include "remote-private.h"

#define NS_PER_SEC G_GINT64_CONSTANT(1000000000)

#ifndef G_OS_WIN32

guint64 os_thread_id(void)
{
	return (guint64)syscall(SYS_gettid);
}

gboolean os_thread_is_main(guint64 tid)
{
	return tid == (guint64)getpid(); /* Linux: the main thread's tid is the pid */
}

void os_random(void *buf, gsize size)
{
	gsize got = 0;

	while (got < size) {
		ssize_t k = getrandom((guint8 *)buf + got, size - got, 0);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			g_error("getrandom failed: %s", g_strerror(errno));
		}
		got += (gsize)k;
	}
}

gboolean os_handle_is_open(MeshOsHandle h)
{
	return h >= 0 && fcntl(h, F_GETFD) >= 0;
}

void os_handle_close(MeshOsHandle h)
{
	if (h >= 0) {
		int saved = errno;
		close(h);
		errno = saved;
	}
}

gboolean os_fd_is_open(int fd)
{
	return os_handle_is_open(fd);
}

gboolean os_resource_peek(const MeshPayloadResources *res, size_t i, gboolean *ret_open)
{
	int fd = mesh_payload_resources_peek_fd(res, i);
	if (fd == -EINVAL)
		return FALSE; /* a port, or an empty slot */
	if (ret_open)
		*ret_open = os_handle_is_open(fd);
	return TRUE;
}

MeshOsHandle os_resource_steal(MeshPayloadResources *res, size_t i)
{
	int fd = mesh_payload_resources_steal_fd(res, i);
	return fd >= 0 ? fd : MESH_OS_HANDLE_INVALID;
}

int os_resource_append_take(MeshPayloadResources *res, MeshOsHandle h)
{
	return mesh_payload_resources_append_fd_take(res, h);
}

int os_resource_steal_fd(MeshPayloadResources *res, size_t i)
{
	return mesh_payload_resources_steal_fd(res, i);
}

int os_resource_move(MeshPayloadResources *dst, MeshPayloadResources *src, size_t i)
{
	if (mesh_payload_resources_get_kind(src, i) != MESH_PAYLOAD_RESOURCE_FD)
		return -EINVAL;
	return mesh_payload_resources_append_fd_take(dst, mesh_payload_resources_steal_fd(src, i));
}

OsEvent os_event_new(gboolean ready, int *ret_errno)
{
	int efd = eventfd(ready ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0) {
		*ret_errno = -errno;
		debug_log(NULL, "eventfd: %s", g_strerror(errno));
	}
	return efd;
}

void os_event_set(OsEvent ev)
{
	uint64_t one = 1;
	if (write(ev, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
		debug_log(NULL, "eventfd write: %s", g_strerror(errno));
}

void os_event_clear(OsEvent ev)
{
	uint64_t v;
	if (read(ev, &v, sizeof(v)) < 0 && errno != EAGAIN)
		debug_log(NULL, "eventfd read: %s", g_strerror(errno));
}

OsTimer os_timer_new(gboolean realtime, int *ret_errno)
{
	int tfd = timerfd_create(realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC,
				 TFD_CLOEXEC | TFD_NONBLOCK);
	if (tfd < 0) {
		*ret_errno = -errno;
		debug_log(NULL, "timerfd_create: %s", g_strerror(errno));
	}
	return tfd;
}

void os_timer_arm_at(OsTimer t, gboolean realtime, gint64 ns)
{
	struct itimerspec its = {{0, 0}, {0, 0}};
	/* Zero would disarm: a deadline at (or before) the clock's origin has passed. */
	if (ns <= 0)
		ns = 1;
	its.it_value.tv_sec = (time_t)(ns / NS_PER_SEC);
	its.it_value.tv_nsec = (long)(ns % NS_PER_SEC);
	if (timerfd_settime(t, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		debug_log(NULL, "timerfd_settime: %s", g_strerror(errno));
}

static gint64 clock_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (gint64)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

gint64 os_monotonic_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

gint64 os_realtime_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

#else /* G_OS_WIN32 */

/* Windows has no "main thread" call: the thread that loaded the library (a
 * DLL linked at load time, or the program itself) is the main thread. */
static DWORD main_thread_id;

__attribute__((constructor)) static void os_note_main_thread(void)
{
	main_thread_id = GetCurrentThreadId();
}

guint64 os_thread_id(void)
{
	return GetCurrentThreadId();
}

gboolean os_thread_is_main(guint64 tid)
{
	return main_thread_id && tid == main_thread_id;
}

void os_random(void *buf, gsize size)
{
	while (size > 0) {
		ULONG n = size > G_MAXUINT32 ? G_MAXUINT32 : (ULONG)size;
		NTSTATUS st = BCryptGenRandom(NULL, buf, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
		if (st < 0)
			g_error("BCryptGenRandom failed: NTSTATUS 0x%08lx", (unsigned long)st);
		buf = (guint8 *)buf + n;
		size -= n;
	}
}

gboolean os_handle_is_open(MeshOsHandle h)
{
	DWORD flags;
	return h && h != INVALID_HANDLE_VALUE && GetHandleInformation(h, &flags);
}

void os_handle_close(MeshOsHandle h)
{
	if (h && h != INVALID_HANDLE_VALUE) {
		int saved = errno;
		CloseHandle(h);
		errno = saved;
	}
}

gboolean os_fd_is_open(int fd)
{
	return fd >= 0 && _get_osfhandle(fd) != (intptr_t)INVALID_HANDLE_VALUE;
}

gboolean os_resource_peek(const MeshPayloadResources *res, size_t i, gboolean *ret_open)
{
	switch (mesh_payload_resources_get_kind(res, i)) {
	case MESH_PAYLOAD_RESOURCE_FD:
		if (ret_open)
			*ret_open = os_fd_is_open(mesh_payload_resources_peek_fd(res, i));
		return TRUE;
	case MESH_PAYLOAD_RESOURCE_HANDLE:
		if (ret_open)
			*ret_open = os_handle_is_open(mesh_payload_resources_peek_handle(res, i));
		return TRUE;
	default:
		return FALSE; /* a port, or an empty slot */
	}
}

MeshOsHandle os_resource_steal(MeshPayloadResources *res, size_t i)
{
	HANDLE h = MESH_OS_HANDLE_INVALID;

	switch (mesh_payload_resources_get_kind(res, i)) {
	case MESH_PAYLOAD_RESOURCE_HANDLE:
		return mesh_payload_resources_steal_handle(res, i);
	case MESH_PAYLOAD_RESOURCE_FD: {
		/* A descriptor owns its handle: the handle leaves as a duplicate. */
		int fd = mesh_payload_resources_steal_fd(res, i);
		HANDLE fh = (HANDLE)_get_osfhandle(fd);
		if (fh == INVALID_HANDLE_VALUE ||
		    !DuplicateHandle(GetCurrentProcess(), fh, GetCurrentProcess(), &h, 0, FALSE,
				     DUPLICATE_SAME_ACCESS))
			h = MESH_OS_HANDLE_INVALID;
		_close(fd);
		return h;
	}
	default:
		return MESH_OS_HANDLE_INVALID;
	}
}

int os_resource_append_take(MeshPayloadResources *res, MeshOsHandle h)
{
	return mesh_payload_resources_append_handle_take(res, h);
}

int os_resource_steal_fd(MeshPayloadResources *res, size_t i)
{
	HANDLE h = mesh_payload_resources_peek_handle(res, i);
	if (!h)
		return mesh_payload_resources_steal_fd(res, i);
	int fd = _open_osfhandle((intptr_t)h, 0);
	if (fd < 0)
		return -EINVAL;
	mesh_payload_resources_steal_handle(res, i); /* the descriptor owns it now */
	return fd;
}

int os_resource_move(MeshPayloadResources *dst, MeshPayloadResources *src, size_t i)
{
	switch (mesh_payload_resources_get_kind(src, i)) {
	case MESH_PAYLOAD_RESOURCE_FD:
		return mesh_payload_resources_append_fd_take(dst,
							     mesh_payload_resources_steal_fd(src, i));
	case MESH_PAYLOAD_RESOURCE_HANDLE:
		return mesh_payload_resources_append_handle_take(
			dst, mesh_payload_resources_steal_handle(src, i));
	default:
		return -EINVAL;
	}
}

/* A negative errno for the last Win32 error, logged with what failed. */
static int last_error(const char *what)
{
	DWORD e = GetLastError();
	debug_log(NULL, "%s: Win32 error %lu", what, (unsigned long)e);
	return e == ERROR_NOT_ENOUGH_MEMORY || e == ERROR_NO_SYSTEM_RESOURCES ? -ENOMEM : -EIO;
}

OsEvent os_event_new(gboolean ready, int *ret_errno)
{
	/* Manual reset: signalled while set, as the eventfd is readable. */
	HANDLE ev = CreateEventW(NULL, TRUE, ready, NULL);
	if (!ev)
		*ret_errno = last_error("CreateEventW");
	return ev;
}

void os_event_set(OsEvent ev)
{
	if (!SetEvent(ev))
		last_error("SetEvent");
}

void os_event_clear(OsEvent ev)
{
	if (!ResetEvent(ev))
		last_error("ResetEvent");
}

OsTimer os_timer_new(gboolean realtime, int *ret_errno)
{
	HANDLE t = CreateWaitableTimerExW(NULL, NULL, CREATE_WAITABLE_TIMER_MANUAL_RESET,
					  TIMER_ALL_ACCESS);
	if (!t)
		*ret_errno = last_error("CreateWaitableTimerExW");
	return t;
}

/* 1970-01-01 as a FILETIME (100 ns units since 1601-01-01). */
#define FILETIME_OF_1970 G_GINT64_CONSTANT(116444736000000000)

void os_timer_arm_at(OsTimer t, gboolean realtime, gint64 ns)
{
	LARGE_INTEGER due;

	if (realtime) {
		/* Absolute: a FILETIME (positive), which follows the wall clock. */
		due.QuadPart = FILETIME_OF_1970 + (ns > 0 ? ns / 100 : 0);
		if (due.QuadPart <= 0)
			due.QuadPart = 1;
	} else {
		/* Windows has no absolute monotonic due time: relative (negative), from now. */
		gint64 left = ns - os_monotonic_ns();
		due.QuadPart = left > 0 ? -((left + 99) / 100) : -1;
	}
	if (!SetWaitableTimer(t, &due, 0, NULL, NULL, FALSE))
		last_error("SetWaitableTimer");
}

gint64 os_monotonic_ns(void)
{
	LARGE_INTEGER c, f;

	QueryPerformanceFrequency(&f); /* fixed at boot; reads shared memory */
	QueryPerformanceCounter(&c);
	return (c.QuadPart / f.QuadPart) * NS_PER_SEC + (c.QuadPart % f.QuadPart) * NS_PER_SEC / f.QuadPart;
}

gint64 os_realtime_ns(void)
{
	FILETIME ft;
	GetSystemTimePreciseAsFileTime(&ft);
	gint64 t = ((gint64)ft.dwHighDateTime << 32 | ft.dwLowDateTime) - FILETIME_OF_1970;
	return t * 100;
}

#endif
