/* SPDX-License-Identifier: MIT */
/*
 * Fd helpers: the owned-fd array, SCM_RIGHTS send/receive and flag helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pal/pal.h>

#include "fd-private.h"

struct PalFdArray {
	int *fds;
	size_t len;
	size_t cap;
};

/* Room for the most fds one message may carry, aligned for cmsghdr. */
typedef union {
	struct cmsghdr align;
	char buf[CMSG_SPACE(sizeof(int) * PAL_FDS_MAX)];
} PalFdControl;

PAL_API PalFdArray *pal_fd_array_new(void)
{
	return calloc(1, sizeof(PalFdArray));
}

PAL_API PalFdArray *pal_fd_array_free(PalFdArray *array)
{
	if (!array)
		return NULL;
	pal_fd_array_clear(array);
	free(array->fds);
	free(array);
	return NULL;
}

/* Makes room for @extra more entries without changing the contents. */
static int fd_array_reserve(PalFdArray *array, size_t extra)
{
	size_t need, cap;
	int *fds;

	if (extra > SIZE_MAX / sizeof(int) - array->len)
		return -ENOMEM;
	need = array->len + extra;
	if (need <= array->cap)
		return 0;

	cap = array->cap ? array->cap : 8;
	while (cap < need)
		cap = cap > SIZE_MAX / sizeof(int) / 2 ? need : cap * 2;

	fds = realloc(array->fds, cap * sizeof(int));
	if (!fds)
		return -ENOMEM;
	array->fds = fds;
	array->cap = cap;
	return 0;
}

PAL_API int pal_fd_array_append(PalFdArray *array, int fd)
{
	int r, copy;

	if (!array)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	if (array->len >= INT_MAX)
		return -ENOSPC;

	r = fd_array_reserve(array, 1);
	if (r < 0)
		return r;

	/* Keep copies off 0-2 so that they never pose as stdio. */
	copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0)
		return -errno;

	array->fds[array->len] = copy;
	return (int)array->len++;
}

PAL_API int pal_fd_array_append_take(PalFdArray *array, int fd)
{
	int r;

	if (fd < 0)
		return array ? -EBADF : -EINVAL;
	if (!array)
		r = -EINVAL;
	else if (array->len >= INT_MAX)
		r = -ENOSPC;
	else
		r = fd_array_reserve(array, 1);
	if (r < 0) {
		close(fd); /* consumed, also on failure */
		return r;
	}

	array->fds[array->len] = fd;
	return (int)array->len++;
}

PAL_API size_t pal_fd_array_len(const PalFdArray *array)
{
	return array ? array->len : 0;
}

PAL_API int pal_fd_array_get(const PalFdArray *array, size_t index)
{
	if (!array || index >= array->len)
		return -EINVAL;
	return array->fds[index];
}

PAL_API const int *pal_fd_array_peek_data(const PalFdArray *array)
{
	return array ? array->fds : NULL;
}

PAL_API int pal_fd_array_steal(PalFdArray *array, size_t index)
{
	int fd;

	if (!array || index >= array->len)
		return -EINVAL;
	fd = array->fds[index];
	array->fds[index] = -1;
	return fd;
}

PAL_API void pal_fd_array_clear(PalFdArray *array)
{
	if (!array)
		return;
	for (size_t i = 0; i < array->len; i++)
		array->fds[i] = pal_close_fd(array->fds[i]);
	array->len = 0;
}

PAL_API ssize_t pal_send_with_fds(int sock, const struct iovec *iov, size_t n_iov,
				  const int *fds, size_t n_fds, int flags)
{
	PalFdControl control;
	struct msghdr msg = {
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = n_iov,
	};
	ssize_t n;

	if (n_fds > PAL_FDS_MAX || (n_fds > 0 && !fds) || (n_iov > 0 && !iov))
		return -EINVAL;

	if (n_fds > 0) {
		struct cmsghdr *cmsg;

		for (size_t i = 0; i < n_fds; i++)
			if (fds[i] < 0)
				return -EINVAL;

		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * n_fds);
	}

	do {
		n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);

	return n < 0 ? -errno : n;
}

/* Number of fds an SCM_RIGHTS message carries, bounded by the buffer. */
static size_t cmsg_n_fds(const struct msghdr *msg, const struct cmsghdr *cmsg)
{
	const char *end = (const char *)msg->msg_control + msg->msg_controllen;
	const char *data = (const char *)CMSG_DATA(cmsg);
	size_t len;

	if (cmsg->cmsg_len < CMSG_LEN(0))
		return 0;
	len = cmsg->cmsg_len - CMSG_LEN(0);
	if (data > end)
		return 0;
	if (len > (size_t)(end - data))
		len = (size_t)(end - data);
	return len / sizeof(int);
}

/* Closes every fd that the control messages of @msg carry. */
static void close_received_fds(const struct msghdr *msg)
{
	struct cmsghdr *cmsg;

	for (cmsg = CMSG_FIRSTHDR(msg); cmsg; cmsg = CMSG_NXTHDR((struct msghdr *)msg, cmsg)) {
		size_t n;

		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		n = cmsg_n_fds(msg, cmsg);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
			pal_close_fd(fd);
		}
	}
}

/*
 * Checks what one received message carried and moves its fds to @fds:
 * returns @n, or a negative errno with every received fd closed.
 */
static ssize_t take_received_fds(const struct msghdr *msg, ssize_t n, PalFdArray *fds,
				 size_t max_fds)
{
	struct cmsghdr *cmsg;
	size_t n_fds = 0;
	bool unexpected = false;
	int r;

	for (cmsg = CMSG_FIRSTHDR(msg); cmsg; cmsg = CMSG_NXTHDR((struct msghdr *)msg, cmsg)) {
		if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
			n_fds += cmsg_n_fds(msg, cmsg);
		else
			unexpected = true;
	}

	if ((msg->msg_flags & MSG_CTRUNC) || unexpected || n_fds > max_fds ||
	    (n_fds > 0 && !fds)) {
		close_received_fds(msg);
		return -EPROTO;
	}
	if (msg->msg_flags & MSG_TRUNC) {
		close_received_fds(msg);
		return -EMSGSIZE;
	}
	if (n_fds == 0)
		return n;

	/* Reserve first, so that the array changes only on success. */
	r = fd_array_reserve(fds, n_fds);
	if (r < 0) {
		close_received_fds(msg);
		return r;
	}
	for (cmsg = CMSG_FIRSTHDR(msg); cmsg; cmsg = CMSG_NXTHDR((struct msghdr *)msg, cmsg)) {
		size_t count = cmsg_n_fds(msg, cmsg);

		memcpy(fds->fds + fds->len, CMSG_DATA(cmsg), count * sizeof(int));
		fds->len += count;
	}
	return n;
}

ssize_t recv_with_fds_control(int sock, struct iovec *iov, size_t n_iov,
			      PalFdArray *fds, size_t max_fds, int flags,
			      size_t control_len)
{
	PalFdControl control;
	struct msghdr msg = {
		.msg_iov = iov,
		.msg_iovlen = n_iov,
		.msg_control = control.buf,
	};
	ssize_t n;

	if (max_fds > PAL_FDS_MAX || (n_iov > 0 && !iov) || control_len > sizeof(control.buf))
		return -EINVAL;
	msg.msg_controllen = control_len ? control_len : sizeof(control.buf);

	do {
		n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return take_received_fds(&msg, n, fds, max_fds);
}

PAL_API ssize_t pal_recv_many_with_fds(int sock, PalRecvPacket *packets, size_t n_packets,
				       size_t max_fds, int flags)
{
	struct mmsghdr mm[PAL_RECV_MANY_MAX];
	/* Room for @max_fds exactly: more is MSG_CTRUNC, not silently accepted. */
	size_t control_len = CMSG_SPACE(max_fds * sizeof(int));
	size_t stride = CMSG_ALIGN(control_len);
	union {
		struct cmsghdr align;
		char buf[8192];
	} local;
	char *control = local.buf;
	int n;

	if (!packets || n_packets == 0 || n_packets > PAL_RECV_MANY_MAX || max_fds > PAL_FDS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n_packets; i++)
		if (packets[i].n_iov > 0 && !packets[i].iov)
			return -EINVAL;
	if (stride * n_packets > sizeof(local.buf)) {
		control = malloc(stride * n_packets);
		if (!control)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n_packets; i++) {
		mm[i] = (struct mmsghdr){
			.msg_hdr = {
				.msg_iov = packets[i].iov,
				.msg_iovlen = packets[i].n_iov,
				.msg_control = control + i * stride,
				.msg_controllen = control_len,
			},
		};
	}
	do {
		n = recvmmsg(sock, mm, n_packets, flags | MSG_CMSG_CLOEXEC, NULL);
	} while (n < 0 && errno == EINTR);
	int e = errno;
	for (int i = 0; i < n; i++)
		packets[i].result =
			take_received_fds(&mm[i].msg_hdr, mm[i].msg_len, packets[i].fds, max_fds);
	if (control != local.buf)
		free(control);
	return n < 0 ? -e : n;
}

PAL_API ssize_t pal_recv_with_fds(int sock, struct iovec *iov, size_t n_iov,
				  PalFdArray *fds, size_t max_fds, int flags)
{
	return recv_with_fds_control(sock, iov, n_iov, fds, max_fds, flags, 0);
}

PAL_API int pal_fd_set_cloexec(int fd, bool cloexec)
{
	int flags, nflags;

	flags = fcntl(fd, F_GETFD);
	if (flags < 0)
		return -errno;
	nflags = cloexec ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
	if (nflags != flags && fcntl(fd, F_SETFD, nflags) < 0)
		return -errno;
	return 0;
}

PAL_API int pal_fd_set_nonblock(int fd, bool nonblock)
{
	int flags, nflags;

	flags = fcntl(fd, F_GETFL);
	if (flags < 0)
		return -errno;
	nflags = nonblock ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
	if (nflags != flags && fcntl(fd, F_SETFL, nflags) < 0)
		return -errno;
	return 0;
}

PAL_API int pal_socketpair(int type, int ret_fds[2])
{
	int fds[2];

	if (!ret_fds)
		return -EINVAL;
	if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) < 0)
		return -errno;
	ret_fds[0] = fds[0];
	ret_fds[1] = fds[1];
	return 0;
}
