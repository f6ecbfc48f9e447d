/* SPDX-License-Identifier: MIT */
/*
 * Internals of fd.c that tests reach by linking fd.c's object directly.
 * Not installed, not exported.
 */
#pragma once

#include <pal/pal.h>

/**
 * recv_with_fds_control:
 * @control_len: bytes of control buffer to offer the kernel, at most the
 *     size needed for %PAL_FDS_MAX fds; 0 for that full size
 *
 * pal_recv_with_fds() with a smaller control buffer, so that tests can make
 * the kernel truncate the control data (MSG_CTRUNC) for real.
 */
ssize_t recv_with_fds_control(int sock, struct iovec *iov, size_t n_iov,
			      PalFdArray *fds, size_t max_fds, int flags,
			      size_t control_len);
