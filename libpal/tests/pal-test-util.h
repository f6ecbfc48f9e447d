/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the libpal tests.
 */
#pragma once

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Writes the open fds of this process, sorted, as "0 1 2 ..." into @buf.
 * Comparing two snapshots shows whether an operation leaked or closed fds.
 */
static inline void fd_snapshot(char *buf, size_t size)
{
	struct dirent *de;
	int fds[2048];
	size_t n = 0, len = 0;
	DIR *dir;

	dir = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(dir);
	while ((de = readdir(dir))) {
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(dir))
			continue;
		ck_assert_uint_lt(n, sizeof(fds) / sizeof(fds[0]));
		fds[n++] = fd;
	}
	closedir(dir);

	/* Insertion sort: the lists are short. */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
			int t = fds[j];

			fds[j] = fds[j - 1];
			fds[j - 1] = t;
		}

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(buf + len, size - len, i ? " %d" : "%d", fds[i]);

		ck_assert_int_gt(w, 0);
		ck_assert_uint_lt((size_t)w, size - len);
		len += (size_t)w;
	}
}

/* Whether @fd is an open fd. */
static inline int fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}
