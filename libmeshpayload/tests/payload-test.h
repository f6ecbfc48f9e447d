/* SPDX-License-Identifier: MIT */
/* Helpers shared by the libmeshpayload tests. */
#pragma once

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#ifdef _WIN32
#include <io.h>
#include <windows.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <meshpayload/meshpayload.h>

#include "test-messages.pb-c.h"

/* A port stand-in: counts how often it was released. */
typedef struct {
	MeshPayloadObject base;
	int id;
	int released;
} TestObject;

static void test_object_release(MeshPayloadObject *object)
{
	((TestObject *)object)->released++;
}

static const MeshPayloadObjectClass test_object_class = {
	.version = MESH_PAYLOAD_OBJECT_CLASS_VERSION,
	.name = "TestObject",
	.release = test_object_release,
};

static inline void test_object_init(TestObject *o, int id)
{
	o->base.klass = &test_object_class;
	o->id = id;
	o->released = 0;
}

#ifdef _WIN32
/* On Windows the fds are the C runtime's descriptors, each over a HANDLE. */
static inline bool fd_is_open(int fd)
{
	return _get_osfhandle(fd) != -1;
}

/* Whether a child created with inheritance would get @fd's HANDLE. */
static inline bool fd_is_inheritable(int fd)
{
	DWORD flags = 0;
	ck_assert(GetHandleInformation((HANDLE)_get_osfhandle(fd), &flags));
	return (flags & HANDLE_FLAG_INHERIT) != 0;
}

/* Whether @a and @b are open on the same kernel object. */
static inline bool fds_same_file(int a, int b)
{
	/* Windows 10's kernelbase has it; mingw's kernel32 import library not. */
	typedef BOOL(WINAPI * CompareFn)(HANDLE, HANDLE);
	CompareFn compare = (CompareFn)(void (*)(void))GetProcAddress(
		GetModuleHandleW(L"kernelbase.dll"), "CompareObjectHandles");
	ck_assert_msg(compare != NULL, "no CompareObjectHandles");
	return compare((HANDLE)_get_osfhandle(a), (HANDLE)_get_osfhandle(b));
}

/* Number of open fds of this process: the C runtime has at most 2048. */
static inline int count_open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 2048; fd++)
		n += fd_is_open(fd);
	return n;
}

/* A fresh non-inheritable fd to NUL. */
static inline int open_null(void)
{
	int fd = open("NUL", O_RDONLY | O_NOINHERIT);
	ck_assert_int_ge(fd, 0);
	return fd;
}
#else
static inline bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static inline bool fd_is_inheritable(int fd)
{
	int flags = fcntl(fd, F_GETFD);
	ck_assert_int_ge(flags, 0);
	return (flags & FD_CLOEXEC) == 0;
}

/* Whether @a and @b are open on the same file. */
static inline bool fds_same_file(int a, int b)
{
	struct stat sa, sb;
	ck_assert_int_eq(fstat(a, &sa), 0);
	ck_assert_int_eq(fstat(b, &sb), 0);
	return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

/* Number of open fds of this process. */
static inline int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* A fresh close-on-exec fd to /dev/null. */
static inline int open_null(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	return fd;
}
#endif

/* Parses "0a 02 68 69" into @out (at most 256 bytes); returns the length. */
static inline size_t parse_hex(const char *hex, uint8_t *out)
{
	size_t n = 0;

	for (const char *p = hex; *p;) {
		if (*p == ' ') {
			p++;
			continue;
		}
		unsigned v;
		ck_assert_int_eq(sscanf(p, "%2x", &v), 1);
		ck_assert_uint_lt(n, 256);
		out[n++] = (uint8_t)v;
		p += 2;
	}
	return n;
}

static inline void assert_bytes(const uint8_t *got, size_t got_len, const char *hex)
{
	uint8_t want[256];
	size_t n = parse_hex(hex, want);
	char got_hex[3 * 256 + 1] = "";

	for (size_t i = 0; i < got_len && i < 256; i++)
		sprintf(got_hex + 3 * i, "%02x ", got[i]);
	ck_assert_msg(got_len == n, "got %s, expected %s", got_hex, hex);
	ck_assert_msg(n == 0 || memcmp(got, want, n) == 0, "got %s, expected %s", got_hex, hex);
}
