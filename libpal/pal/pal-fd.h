/* SPDX-License-Identifier: MIT */
/**
 * Fd helpers: an owned-fd array, SCM_RIGHTS send/receive, flag helpers.
 *
 * Thread rules: a PalFdArray is not internally locked; use one from one
 * thread at a time. The send/receive functions are thread-safe.
 */
#pragma once

#if !defined(__PAL_H_INSIDE__) && !defined(PAL_COMPILATION)
#error "Only <pal/pal.h> can be included directly."
#endif

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

PAL_BEGIN_DECLS

/**
 * PAL_FDS_MAX:
 *
 * The most fds one message may carry (the kernel's SCM_MAX_FD).
 */
#define PAL_FDS_MAX 253

/**
 * PalFdArray:
 *
 * An ordered array of fds that the array owns: every fd in it is closed when
 * the array is cleared or freed, unless stolen first.
 */
typedef struct PalFdArray PalFdArray;

/**
 * pal_fd_array_new:
 *
 * Returns: (transfer full): a new empty array, or NULL with errno = ENOMEM.
 */
PAL_API PalFdArray *pal_fd_array_new(void);

/**
 * pal_fd_array_free:
 * @array: (nullable): an array
 *
 * Closes every fd still in @array and frees it.
 *
 * Returns: NULL.
 */
PAL_API PalFdArray *pal_fd_array_free(PalFdArray *array);
PAL_DEFINE_CLEANUP_FUNC(PalFdArray, pal_fd_array_free)

/**
 * pal_fd_array_append:
 * @array: an array
 * @fd: an fd, borrowed
 *
 * Appends a close-on-exec duplicate of @fd (F_DUPFD_CLOEXEC).
 *
 * Returns: the index of the new entry, or a negative errno.
 */
PAL_API int pal_fd_array_append(PalFdArray *array, int fd);

/**
 * pal_fd_array_append_take:
 * @array: an array
 * @fd: an fd
 *
 * Consumes @fd, also on failure. (It is then closed.)
 *
 * Returns: the index of the new entry, or a negative errno. -EBADF for a
 * negative fd.
 */
PAL_API int pal_fd_array_append_take(PalFdArray *array, int fd);

/** pal_fd_array_len: Returns: the number of entries (stolen ones included). */
PAL_API size_t pal_fd_array_len(const PalFdArray *array);

/**
 * pal_fd_array_get:
 * @array: an array
 * @index: an index below the length
 *
 * Returns: (transfer none): the fd at @index (still owned by @array), -1 if
 * it was stolen, or -EINVAL for an index out of range.
 */
PAL_API int pal_fd_array_get(const PalFdArray *array, size_t index);

/**
 * pal_fd_array_peek_data:
 * @array: an array
 *
 * Returns: (transfer none): the fds as a contiguous array of
 * pal_fd_array_len() entries, valid until @array next changes.
 */
PAL_API const int *pal_fd_array_peek_data(const PalFdArray *array);

/**
 * pal_fd_array_steal:
 * @array: an array
 * @index: an index below the length
 *
 * Moves the fd at @index to the caller; the slot becomes -1.
 *
 * Returns: (transfer full): the fd, -1 if already stolen, or -EINVAL.
 */
PAL_API int pal_fd_array_steal(PalFdArray *array, size_t index);

/**
 * pal_fd_array_clear:
 * @array: an array
 *
 * Closes every fd in @array and empties it.
 */
PAL_API void pal_fd_array_clear(PalFdArray *array);

/**
 * pal_send_with_fds:
 * @sock: a connected socket
 * @iov: the data
 * @n_iov: entries in @iov
 * @fds: (nullable): fds to pass, borrowed (the kernel duplicates them)
 * @n_fds: entries in @fds, at most %PAL_FDS_MAX
 * @flags: extra sendmsg() flags such as MSG_DONTWAIT; MSG_NOSIGNAL is
 *     always added
 *
 * One sendmsg() call with an SCM_RIGHTS control message when @n_fds > 0.
 * EINTR is retried.
 *
 * Returns: the number of bytes sent, or a negative errno (-EINVAL for too
 * many fds or a negative fd).
 */
PAL_API ssize_t pal_send_with_fds(int sock, const struct iovec *iov, size_t n_iov,
				  const int *fds, size_t n_fds, int flags);

/**
 * pal_recv_with_fds:
 * @sock: a connected socket
 * @iov: buffers for the data
 * @n_iov: entries in @iov
 * @fds: (nullable): array the received fds are appended to; when NULL, any
 *     received fd is closed and the call fails with -EPROTO
 * @max_fds: the most fds accepted in this message, at most %PAL_FDS_MAX
 * @flags: extra recvmsg() flags such as MSG_DONTWAIT; MSG_CMSG_CLOEXEC is
 *     always added
 *
 * One recvmsg() call. Received fds are close-on-exec. If the control data
 * was truncated (MSG_CTRUNC), more than @max_fds fds arrived, or an
 * unexpected control message arrived, every fd received by this call is
 * closed, @fds is left as it was and -EPROTO is returned. If the data itself
 * was truncated (MSG_TRUNC, datagram sockets), the fds are closed likewise
 * and -EMSGSIZE is returned. EINTR is retried.
 *
 * Returns: the number of bytes received (0 at end of stream), or a negative
 * errno.
 */
PAL_API ssize_t pal_recv_with_fds(int sock, struct iovec *iov, size_t n_iov,
				  PalFdArray *fds, size_t max_fds, int flags);

/** PAL_RECV_MANY_MAX: the most packets one pal_recv_many_with_fds() call takes. */
#define PAL_RECV_MANY_MAX 64

/**
 * PalRecvPacket:
 * @iov: buffers for this packet's data
 * @n_iov: entries in @iov
 * @fds: (nullable): array this packet's fds are appended to (as for
 *     pal_recv_with_fds())
 * @result: set by the call: the packet's size (0 at end of stream), or
 *     -EPROTO / -EMSGSIZE / -ENOMEM for this packet alone (its fds closed)
 *
 * One packet of a pal_recv_many_with_fds() call.
 */
typedef struct {
	struct iovec *iov;
	size_t n_iov;
	PalFdArray *fds;
	ssize_t result;
} PalRecvPacket;

/**
 * pal_recv_many_with_fds:
 * @sock: a connected datagram or seqpacket socket
 * @packets: (array length=n_packets): where the packets go
 * @n_packets: entries in @packets, 1 to %PAL_RECV_MANY_MAX
 * @max_fds: the most fds accepted per packet, at most %PAL_FDS_MAX
 * @flags: extra recvmmsg() flags such as MSG_DONTWAIT; MSG_CMSG_CLOEXEC is
 *     always added
 *
 * One recvmmsg() call: the batch form of pal_recv_with_fds(), with the same
 * checks per packet. Fewer packets than asked mean none more were queued
 * (with MSG_DONTWAIT), which saves the call that would fail with EAGAIN.
 * EINTR is retried.
 *
 * Returns: the number of packets filled in (each with its @result), or a
 * negative errno (-EAGAIN when nothing was queued).
 */
PAL_API ssize_t pal_recv_many_with_fds(int sock, PalRecvPacket *packets, size_t n_packets,
				       size_t max_fds, int flags);

/**
 * pal_fd_set_cloexec:
 * @fd: an fd
 * @cloexec: the wanted state of FD_CLOEXEC
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_fd_set_cloexec(int fd, bool cloexec);

/**
 * pal_fd_set_nonblock:
 * @fd: an fd
 * @nonblock: the wanted state of O_NONBLOCK
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_fd_set_nonblock(int fd, bool nonblock);

/**
 * pal_socketpair:
 * @type: SOCK_STREAM, SOCK_SEQPACKET or SOCK_DGRAM, optionally or'ed with
 *     SOCK_NONBLOCK
 * @ret_fds: (out): the two ends, both close-on-exec
 *
 * An AF_UNIX socketpair.
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_socketpair(int type, int ret_fds[2]);

PAL_END_DECLS
