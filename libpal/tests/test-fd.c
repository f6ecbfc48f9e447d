/* SPDX-License-Identifier: MIT */
/*
 * Tests of pal-fd.h: the fd array, SCM_RIGHTS send/receive over real
 * socketpairs, and the flag helpers. Linked with fd.c's object, so that the
 * internal recv_with_fds_control() can force a real MSG_CTRUNC.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pal/pal.h>

#include "fd-private.h"
#include "pal-test-util.h"

/* A fresh file with an inode of its own, not close-on-exec. */
static int new_file(void)
{
	int fd = memfd_create("pal-test", 0);

	ck_assert_int_ge(fd, 0);
	return fd;
}

static void assert_same_file(int a, int b)
{
	struct stat sa, sb;

	ck_assert_int_eq(fstat(a, &sa), 0);
	ck_assert_int_eq(fstat(b, &sb), 0);
	ck_assert_uint_eq(sa.st_dev, sb.st_dev);
	ck_assert_uint_eq(sa.st_ino, sb.st_ino);
}

static int is_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	ck_assert_int_ge(flags, 0);
	return flags & FD_CLOEXEC;
}

static ssize_t send_files(int sock, const char *data, const int *fds, size_t n_fds)
{
	struct iovec iov = { .iov_base = (void *)data, .iov_len = strlen(data) };

	return pal_send_with_fds(sock, &iov, 1, fds, n_fds, 0);
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fds[i] = pal_close_fd(fds[i]);
}

START_TEST(test_array_append_get_steal)
{
	char before[8192], after[8192];
	PalFdArray *array;
	int a, b, copy, stolen;

	fd_snapshot(before, sizeof(before));

	array = pal_fd_array_new();
	ck_assert_ptr_nonnull(array);
	ck_assert_uint_eq(pal_fd_array_len(array), 0);
	ck_assert_int_eq(pal_fd_array_get(array, 0), -EINVAL);
	ck_assert_int_eq(pal_fd_array_steal(array, 0), -EINVAL);

	a = new_file();
	b = new_file();

	/* append duplicates: a new number, the same file, close-on-exec */
	ck_assert_int_eq(pal_fd_array_append(array, a), 0);
	copy = pal_fd_array_get(array, 0);
	ck_assert_int_ge(copy, 3);
	ck_assert_int_ne(copy, a);
	assert_same_file(copy, a);
	ck_assert(is_cloexec(copy));
	ck_assert(!is_cloexec(a));

	/* append_take moves the fd itself */
	ck_assert_int_eq(pal_fd_array_append_take(array, b), 1);
	ck_assert_int_eq(pal_fd_array_get(array, 1), b);
	ck_assert_uint_eq(pal_fd_array_len(array), 2);
	ck_assert_int_eq(pal_fd_array_peek_data(array)[0], copy);
	ck_assert_int_eq(pal_fd_array_peek_data(array)[1], b);

	/* bad fds */
	ck_assert_int_eq(pal_fd_array_append_take(array, -1), -EBADF);
	ck_assert_int_eq(pal_fd_array_append(array, -1), -EBADF);
	ck_assert_int_eq(pal_fd_array_append(array, 100000), -EBADF);
	ck_assert_uint_eq(pal_fd_array_len(array), 2);
	ck_assert_int_eq(pal_fd_array_get(array, 2), -EINVAL);

	/* steal: the slot becomes -1, stealing again gives -1 */
	stolen = pal_fd_array_steal(array, 1);
	ck_assert_int_eq(stolen, b);
	ck_assert_int_eq(pal_fd_array_get(array, 1), -1);
	ck_assert_int_eq(pal_fd_array_steal(array, 1), -1);
	ck_assert_uint_eq(pal_fd_array_len(array), 2);

	/* clear closes what the array still owns, not the stolen fd */
	pal_fd_array_clear(array);
	ck_assert_uint_eq(pal_fd_array_len(array), 0);
	ck_assert(!fd_is_open(copy));
	ck_assert(fd_is_open(stolen));
	ck_assert(fd_is_open(a));

	/* the array is usable after clear; free closes the rest */
	ck_assert_int_eq(pal_fd_array_append_take(array, stolen), 0);
	ck_assert_ptr_null(pal_fd_array_free(array));
	ck_assert(!fd_is_open(stolen));
	ck_assert_ptr_null(pal_fd_array_free(NULL));

	pal_close_fd(a);
	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
}
END_TEST

/* A `_take` consumes its fd also when it fails: the caller never closes it. */
START_TEST(test_array_append_take_consumes_on_failure)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pal_fd_array_append_take(NULL, fd), -EINVAL);
	errno = 0;
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
	/* Nothing to consume: a negative fd is refused as before. */
	ck_assert_int_eq(pal_fd_array_append_take(NULL, -1), -EINVAL);
}
END_TEST

START_TEST(test_array_grows)
{
	PalFdArray *array = pal_fd_array_new();
	int fd = new_file();

	for (int i = 0; i < 300; i++)
		ck_assert_int_eq(pal_fd_array_append(array, fd), i);
	ck_assert_uint_eq(pal_fd_array_len(array), 300);
	for (size_t i = 0; i < 300; i++) {
		int copy = pal_fd_array_get(array, i);

		assert_same_file(copy, fd);
		for (size_t j = 0; j < i; j++)
			ck_assert_int_ne(pal_fd_array_peek_data(array)[j], copy);
	}
	pal_fd_array_free(array);
	pal_close_fd(fd);
}
END_TEST

START_TEST(test_flag_helpers)
{
	int fds[2], flags;

	ck_assert_int_eq(pipe(fds), 0);
	ck_assert(!is_cloexec(fds[0]));

	ck_assert_int_eq(pal_fd_set_cloexec(fds[0], true), 0);
	ck_assert(is_cloexec(fds[0]));
	ck_assert_int_eq(pal_fd_set_cloexec(fds[0], true), 0);
	ck_assert(is_cloexec(fds[0]));
	ck_assert_int_eq(pal_fd_set_cloexec(fds[0], false), 0);
	ck_assert(!is_cloexec(fds[0]));

	ck_assert_int_eq(pal_fd_set_nonblock(fds[0], true), 0);
	flags = fcntl(fds[0], F_GETFL);
	ck_assert(flags & O_NONBLOCK);
	ck_assert_int_eq(pal_fd_set_nonblock(fds[0], false), 0);
	flags = fcntl(fds[0], F_GETFL);
	ck_assert(!(flags & O_NONBLOCK));

	close_all(fds, 2);
	ck_assert_int_eq(pal_fd_set_cloexec(fds[0], true), -EBADF);
	ck_assert_int_eq(pal_fd_set_cloexec(100000, true), -EBADF);
	ck_assert_int_eq(pal_fd_set_nonblock(100000, true), -EBADF);
}
END_TEST

START_TEST(test_socketpair)
{
	int sv[2];

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert(is_cloexec(sv[0]) && is_cloexec(sv[1]));
	ck_assert(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
	close_all(sv, 2);

	ck_assert_int_eq(pal_socketpair(SOCK_STREAM | SOCK_NONBLOCK, sv), 0);
	ck_assert(is_cloexec(sv[0]) && is_cloexec(sv[1]));
	ck_assert(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
	ck_assert(fcntl(sv[1], F_GETFL) & O_NONBLOCK);
	close_all(sv, 2);

	ck_assert_int_eq(pal_socketpair(12345, sv), -EINVAL);
}
END_TEST

/* Sends @n fds over @type and checks what arrives, at index 1 of an array. */
static void roundtrip(int type, size_t n)
{
	char before[8192], after[8192], buf[64];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	int files[PAL_FDS_MAX], sv[2], first;
	PalFdArray *array;
	ssize_t r;

	ck_assert_uint_le(n, PAL_FDS_MAX);
	ck_assert_int_eq(pal_socketpair(type, sv), 0);
	fd_snapshot(before, sizeof(before));

	for (size_t i = 0; i < n; i++)
		files[i] = new_file();
	array = pal_fd_array_new();
	first = new_file();
	ck_assert_int_eq(pal_fd_array_append_take(array, first), 0);

	ck_assert_int_eq(send_files(sv[0], "payload", files, n), 7);
	r = pal_recv_with_fds(sv[1], &iov, 1, array, PAL_FDS_MAX, 0);
	ck_assert_int_eq(r, 7);
	ck_assert_mem_eq(buf, "payload", 7);

	ck_assert_uint_eq(pal_fd_array_len(array), n + 1);
	ck_assert_int_eq(pal_fd_array_get(array, 0), first);
	for (size_t i = 0; i < n; i++) {
		int fd = pal_fd_array_get(array, i + 1);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_ne(fd, files[i]);
		assert_same_file(fd, files[i]);
		ck_assert(is_cloexec(fd));
		ck_assert(!is_cloexec(files[i]));
	}

	pal_fd_array_free(array);
	close_all(files, n);
	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
	close_all(sv, 2);
}

static const size_t roundtrip_counts[] = { 1, 64, PAL_FDS_MAX };

START_TEST(test_roundtrip_seqpacket)
{
	roundtrip(SOCK_SEQPACKET, roundtrip_counts[_i]);
}
END_TEST

START_TEST(test_roundtrip_stream)
{
	roundtrip(SOCK_STREAM, roundtrip_counts[_i]);
}
END_TEST

START_TEST(test_roundtrip_no_fds)
{
	char buf[16];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	PalFdArray *array = pal_fd_array_new();
	int sv[2];

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert_int_eq(send_files(sv[0], "x", NULL, 0), 1);
	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, array, 4, 0), 1);
	ck_assert_uint_eq(pal_fd_array_len(array), 0);

	/* fds == NULL is fine while no fd arrives */
	ck_assert_int_eq(send_files(sv[0], "y", NULL, 0), 1);
	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, NULL, 0, 0), 1);
	ck_assert_int_eq(buf[0], 'y');

	pal_fd_array_free(array);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_message_boundaries)
{
	char buf[16];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	PalFdArray *array = pal_fd_array_new();
	int sv[2], f[3];

	for (int i = 0; i < 3; i++)
		f[i] = new_file();
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert_int_eq(send_files(sv[0], "one", f, 1), 3);
	ck_assert_int_eq(send_files(sv[0], "two", f + 1, 2), 3);

	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, array, 1, 0), 3);
	ck_assert_mem_eq(buf, "one", 3);
	ck_assert_uint_eq(pal_fd_array_len(array), 1);
	assert_same_file(pal_fd_array_get(array, 0), f[0]);

	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, array, 2, 0), 3);
	ck_assert_mem_eq(buf, "two", 3);
	ck_assert_uint_eq(pal_fd_array_len(array), 3);
	assert_same_file(pal_fd_array_get(array, 1), f[1]);
	assert_same_file(pal_fd_array_get(array, 2), f[2]);

	pal_fd_array_free(array);
	close_all(f, 3);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_send_invalid)
{
	int files[PAL_FDS_MAX + 1], sv[2], bad[2];
	char buf[8];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET | SOCK_NONBLOCK, sv), 0);
	for (size_t i = 0; i < PAL_FDS_MAX + 1; i++)
		files[i] = STDIN_FILENO;
	ck_assert_int_eq(send_files(sv[0], "x", files, PAL_FDS_MAX + 1), -EINVAL);

	bad[0] = STDIN_FILENO;
	bad[1] = -1;
	ck_assert_int_eq(send_files(sv[0], "x", bad, 2), -EINVAL);
	ck_assert_int_eq(send_files(sv[0], "x", NULL, 1), -EINVAL);

	/* nothing was sent */
	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, NULL, 0, 0), -EAGAIN);
	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, NULL, PAL_FDS_MAX + 1, 0), -EINVAL);

	/* a closed fd is the kernel's -EBADF */
	bad[1] = 100000;
	ck_assert_int_eq(send_files(sv[0], "x", bad, 2), -EBADF);
	close_all(sv, 2);
}
END_TEST

/* Receiving must fail with @expect, close every fd and keep the array. */
static void assert_recv_rejects(int sock, size_t buf_len, size_t max_fds, bool with_array,
				size_t control_len, ssize_t expect)
{
	char before[8192], after[8192], buf[256];
	struct iovec iov = { .iov_base = buf, .iov_len = buf_len };
	PalFdArray *array = NULL;
	int keep = -1;

	if (with_array) {
		array = pal_fd_array_new();
		keep = new_file();
		ck_assert_int_eq(pal_fd_array_append_take(array, keep), 0);
	}
	fd_snapshot(before, sizeof(before));

	ck_assert_int_eq(recv_with_fds_control(sock, &iov, 1, array, max_fds, 0, control_len),
			 expect);

	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
	if (with_array) {
		ck_assert_uint_eq(pal_fd_array_len(array), 1);
		ck_assert_int_eq(pal_fd_array_get(array, 0), keep);
		pal_fd_array_free(array);
	}
}

START_TEST(test_recv_more_than_max)
{
	int files[10], sv[2];

	for (int i = 0; i < 10; i++)
		files[i] = new_file();
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);

	ck_assert_int_eq(send_files(sv[0], "ten", files, 10), 3);
	assert_recv_rejects(sv[1], 16, 4, true, 0, -EPROTO);

	/* the public function, max_fds 0 */
	ck_assert_int_eq(send_files(sv[0], "ten", files, 10), 3);
	assert_recv_rejects(sv[1], 16, 0, true, 0, -EPROTO);

	/* fds == NULL */
	ck_assert_int_eq(send_files(sv[0], "ten", files, 10), 3);
	assert_recv_rejects(sv[1], 16, PAL_FDS_MAX, false, 0, -EPROTO);

	close_all(files, 10);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_recv_ctrunc)
{
	char buf[16];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} control;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cmsg;
	int files[10], sv[2];

	for (int i = 0; i < 10; i++)
		files[i] = new_file();
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);

	/*
	 * First make sure the scenario is real: with room for two fds the
	 * kernel installs two, drops the rest and sets MSG_CTRUNC.
	 */
	ck_assert_int_eq(send_files(sv[0], "ten", files, 10), 3);
	ck_assert_int_eq(recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC), 3);
	ck_assert(msg.msg_flags & MSG_CTRUNC);
	cmsg = CMSG_FIRSTHDR(&msg);
	ck_assert_ptr_nonnull(cmsg);
	ck_assert_int_eq(cmsg->cmsg_type, SCM_RIGHTS);
	ck_assert_uint_eq(cmsg->cmsg_len, CMSG_LEN(2 * sizeof(int)));
	close_all((int *)CMSG_DATA(cmsg), 2);

	/* Now the same through libpal: -EPROTO, the two fds closed. */
	ck_assert_int_eq(send_files(sv[0], "ten", files, 10), 3);
	assert_recv_rejects(sv[1], 16, PAL_FDS_MAX, true, CMSG_SPACE(2 * sizeof(int)), -EPROTO);

	close_all(files, 10);
	close_all(sv, 2);
}
END_TEST

/*
 * MSG_CTRUNC through the public function: with SO_PASSCRED the credentials
 * take room in front of the fds, so PAL_FDS_MAX fds no longer fit.
 */
START_TEST(test_recv_ctrunc_passcred)
{
	int files[PAL_FDS_MAX], sv[2], one = 1;

	for (int i = 0; i < PAL_FDS_MAX; i++)
		files[i] = new_file();
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);

	ck_assert_int_eq(send_files(sv[0], "all", files, PAL_FDS_MAX), 3);
	assert_recv_rejects(sv[1], 16, PAL_FDS_MAX, true, 0, -EPROTO);

	/* a control message other than SCM_RIGHTS alone is refused too */
	ck_assert_int_eq(send_files(sv[0], "none", NULL, 0), 4);
	assert_recv_rejects(sv[1], 16, PAL_FDS_MAX, true, 0, -EPROTO);

	close_all(files, PAL_FDS_MAX);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_recv_msg_trunc)
{
	char big[100];
	struct iovec iov = { .iov_base = big, .iov_len = sizeof(big) };
	int files[3], sv[2];

	memset(big, 'x', sizeof(big));
	for (int i = 0; i < 3; i++)
		files[i] = new_file();
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);

	ck_assert_int_eq(pal_send_with_fds(sv[0], &iov, 1, files, 3, 0), 100);
	assert_recv_rejects(sv[1], 10, PAL_FDS_MAX, true, 0, -EMSGSIZE);

	/* without fds */
	ck_assert_int_eq(pal_send_with_fds(sv[0], &iov, 1, NULL, 0, 0), 100);
	assert_recv_rejects(sv[1], 10, PAL_FDS_MAX, true, 0, -EMSGSIZE);

	close_all(files, 3);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_eof_and_epipe)
{
	char buf[8];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	int sv[2];

	/* SIGPIPE would kill this process if MSG_NOSIGNAL were missing. */
	signal(SIGPIPE, SIG_DFL);

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	sv[0] = pal_close_fd(sv[0]);
	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, NULL, 0, 0), 0);
	ck_assert_int_eq(send_files(sv[1], "x", NULL, 0), -EPIPE);
	close_all(sv, 2);

	ck_assert_int_eq(pal_socketpair(SOCK_STREAM, sv), 0);
	sv[1] = pal_close_fd(sv[1]);
	ck_assert_int_eq(send_files(sv[0], "x", NULL, 0), -EPIPE);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_dontwait)
{
	char buf[8];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	int sv[2];

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, NULL, 0, MSG_DONTWAIT), -EAGAIN);
	close_all(sv, 2);
}
END_TEST

/* pal_recv_many_with_fds(): several packets per call. */

/* Room for one packet of a batch, and what arrived for it. */
typedef struct {
	char buf[4096];
	struct iovec iov;
	PalFdArray *fds;
} ManySlot;

static void many_slots_init(ManySlot *slots, PalRecvPacket *packets, size_t n, size_t buf_len)
{
	ck_assert_uint_le(buf_len, sizeof(slots[0].buf));
	for (size_t i = 0; i < n; i++) {
		memset(slots[i].buf, 0, sizeof(slots[i].buf));
		slots[i].iov = (struct iovec){ .iov_base = slots[i].buf, .iov_len = buf_len };
		slots[i].fds = pal_fd_array_new();
		ck_assert_ptr_nonnull(slots[i].fds);
		packets[i] = (PalRecvPacket){
			.iov = &slots[i].iov,
			.n_iov = 1,
			.fds = slots[i].fds,
			.result = 12345, /* must be overwritten */
		};
	}
}

static void many_slots_clear(ManySlot *slots, size_t n)
{
	for (size_t i = 0; i < n; i++)
		slots[i].fds = pal_fd_array_free(slots[i].fds);
}

/* A payload of @len bytes that tells packet @tag apart from the others. */
static void fill_payload(char *buf, size_t len, int tag)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(tag * 31 + i * 7 + 1);
}

static void send_packet(int sock, size_t len, int tag, const int *fds, size_t n_fds)
{
	char data[4096];
	struct iovec iov = { .iov_base = data, .iov_len = len };

	ck_assert_uint_le(len, sizeof(data));
	fill_payload(data, len, tag);
	ck_assert_int_eq(pal_send_with_fds(sock, &iov, 1, fds, n_fds, 0), (ssize_t)len);
}

/* Packet @slot holds the payload of @tag and exactly the files @files, in order. */
static void assert_packet(const ManySlot *slot, const PalRecvPacket *packet, size_t len, int tag,
			  const int *files, size_t n_files)
{
	char expect[4096];

	ck_assert_int_eq(packet->result, (ssize_t)len);
	fill_payload(expect, len, tag);
	ck_assert_mem_eq(slot->buf, expect, len);
	ck_assert_uint_eq(pal_fd_array_len(slot->fds), n_files);
	for (size_t i = 0; i < n_files; i++) {
		int fd = pal_fd_array_get(slot->fds, i);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_ne(fd, files[i]);
		assert_same_file(fd, files[i]);
		ck_assert(is_cloexec(fd));
	}
}

START_TEST(test_recv_many_batch)
{
	/* Sizes and fd counts per packet; every fd a file of its own. */
	static const size_t sizes[] = { 1, 100, 4000, 17, 2048 };
	static const size_t counts[] = { 0, 3, 1, 64, 0 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	char before[8192], after[8192];
	ManySlot slots[N + 2];
	PalRecvPacket packets[N + 2];
	int files[N][64], sv[2], keep;

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	fd_snapshot(before, sizeof(before));
	for (size_t p = 0; p < N; p++) {
		for (size_t i = 0; i < counts[p]; i++)
			files[p][i] = new_file();
		send_packet(sv[0], sizes[p], (int)p, files[p], counts[p]);
	}

	many_slots_init(slots, packets, N + 2, sizeof(slots[0].buf));
	/* An array that already holds an fd: the packet's fds are appended. */
	keep = new_file();
	ck_assert_int_eq(pal_fd_array_append_take(slots[1].fds, keep), 0);

	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, N + 2, 64, MSG_DONTWAIT), N);
	for (size_t p = 0; p < N; p++) {
		if (p == 1) {
			/* the first entry stays, the three new ones follow */
			ck_assert_int_eq(packets[p].result, (ssize_t)sizes[p]);
			ck_assert_uint_eq(pal_fd_array_len(slots[p].fds), 4);
			ck_assert_int_eq(pal_fd_array_get(slots[p].fds, 0), keep);
			for (size_t i = 0; i < counts[p]; i++) {
				int fd = pal_fd_array_get(slots[p].fds, i + 1);

				assert_same_file(fd, files[p][i]);
				ck_assert(is_cloexec(fd));
			}
			continue;
		}
		assert_packet(&slots[p], &packets[p], sizes[p], (int)p, files[p], counts[p]);
	}
	/* The slots beyond the count are untouched. */
	for (size_t p = N; p < N + 2; p++) {
		ck_assert_int_eq(packets[p].result, 12345);
		ck_assert_uint_eq(pal_fd_array_len(slots[p].fds), 0);
	}
	/* Nothing is left queued. */
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 1, 64, MSG_DONTWAIT), -EAGAIN);

	many_slots_clear(slots, N + 2);
	for (size_t p = 0; p < N; p++)
		close_all(files[p], counts[p]);
	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
	close_all(sv, 2);
}
END_TEST

/*
 * The most packets per call, each with an fd, and room for PAL_FDS_MAX fds
 * per packet: more control room than fits on the stack of the call.
 */
START_TEST(test_recv_many_max_batch)
{
	enum { N = PAL_RECV_MANY_MAX };
	char before[8192], after[8192];
	ManySlot *slots = calloc(N, sizeof(*slots));
	PalRecvPacket packets[N];
	int files[N], sv[2];

	ck_assert_ptr_nonnull(slots);
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	fd_snapshot(before, sizeof(before));
	for (size_t p = 0; p < N; p++) {
		files[p] = new_file();
		send_packet(sv[0], 10 + p, (int)p, &files[p], 1);
	}
	many_slots_init(slots, packets, N, 200);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, N, PAL_FDS_MAX, MSG_DONTWAIT), N);
	for (size_t p = 0; p < N; p++)
		assert_packet(&slots[p], &packets[p], 10 + p, (int)p, &files[p], 1);

	many_slots_clear(slots, N);
	free(slots);
	close_all(files, N);
	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_recv_many_fewer_queued)
{
	ManySlot slots[8];
	PalRecvPacket packets[8];
	int sv[2];

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	many_slots_init(slots, packets, 8, 64);

	/* nothing queued */
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 8, 4, MSG_DONTWAIT), -EAGAIN);
	ck_assert_int_eq(packets[0].result, 12345);

	/* two queued, eight asked */
	send_packet(sv[0], 5, 0, NULL, 0);
	send_packet(sv[0], 6, 1, NULL, 0);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 8, 4, MSG_DONTWAIT), 2);
	assert_packet(&slots[0], &packets[0], 5, 0, NULL, 0);
	assert_packet(&slots[1], &packets[1], 6, 1, NULL, 0);
	ck_assert_int_eq(packets[2].result, 12345);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 8, 4, MSG_DONTWAIT), -EAGAIN);

	/* a blocking socket: MSG_WAITFORONE returns what is there */
	send_packet(sv[0], 7, 2, NULL, 0);
	send_packet(sv[0], 8, 3, NULL, 0);
	send_packet(sv[0], 9, 4, NULL, 0);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 8, 4, MSG_WAITFORONE), 3);
	for (int p = 0; p < 3; p++)
		assert_packet(&slots[p], &packets[p], 7 + p, 2 + p, NULL, 0);

	/* one packet at a time, as many times as there are packets */
	send_packet(sv[0], 11, 5, NULL, 0);
	send_packet(sv[0], 12, 6, NULL, 0);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 1, 4, MSG_DONTWAIT), 1);
	assert_packet(&slots[0], &packets[0], 11, 5, NULL, 0);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 1, 4, MSG_DONTWAIT), 1);
	assert_packet(&slots[0], &packets[0], 12, 6, NULL, 0);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 1, 4, MSG_DONTWAIT), -EAGAIN);

	many_slots_clear(slots, 8);
	close_all(sv, 2);
}
END_TEST

/*
 * A packet in the middle carries more fds than max_fds: it alone fails with
 * -EPROTO and its fds are closed; the packets around it keep theirs.
 * Three ways: more fds than max_fds that still fit the control room
 * (alignment leaves room for one more), so many that the kernel truncates
 * the control data (MSG_CTRUNC), and fds for a packet without an array.
 */
START_TEST(test_recv_many_too_many_fds)
{
	enum { N = 7, MAX = 3 };
	static const size_t counts[N] = { 2, 4, 3, 10, 1, 2, 0 };
	char before[8192], after[8192];
	ManySlot slots[N];
	PalRecvPacket packets[N];
	int files[N][10], sv[2], keep;

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	fd_snapshot(before, sizeof(before));
	for (size_t p = 0; p < N; p++) {
		for (size_t i = 0; i < counts[p]; i++)
			files[p][i] = new_file();
		send_packet(sv[0], 20 + p, (int)p, files[p], counts[p]);
	}
	many_slots_init(slots, packets, N, sizeof(slots[0].buf));
	/* packet 3's array holds an fd already: it must stay, alone */
	keep = new_file();
	ck_assert_int_eq(pal_fd_array_append_take(slots[3].fds, keep), 0);
	/* packet 5 has no array */
	slots[5].fds = pal_fd_array_free(slots[5].fds);
	packets[5].fds = NULL;

	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, N, MAX, MSG_DONTWAIT), N);
	assert_packet(&slots[0], &packets[0], 20, 0, files[0], 2);
	ck_assert_int_eq(packets[1].result, -EPROTO); /* 4 > 3, no MSG_CTRUNC */
	ck_assert_uint_eq(pal_fd_array_len(slots[1].fds), 0);
	assert_packet(&slots[2], &packets[2], 22, 2, files[2], 3); /* exactly max_fds */
	ck_assert_int_eq(packets[3].result, -EPROTO); /* MSG_CTRUNC */
	ck_assert_uint_eq(pal_fd_array_len(slots[3].fds), 1);
	ck_assert_int_eq(pal_fd_array_get(slots[3].fds, 0), keep);
	assert_packet(&slots[4], &packets[4], 24, 4, files[4], 1);
	ck_assert_int_eq(packets[5].result, -EPROTO); /* fds but no array */
	assert_packet(&slots[6], &packets[6], 26, 6, NULL, 0);

	/* Only the accepted fds are open: the rejected ones were all closed. */
	many_slots_clear(slots, N);
	for (size_t p = 0; p < N; p++)
		close_all(files[p], counts[p]);
	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
	close_all(sv, 2);
}
END_TEST

/* A control message other than SCM_RIGHTS fails each packet alone. */
START_TEST(test_recv_many_foreign_cmsg)
{
	char before[8192], after[8192];
	ManySlot slots[3];
	PalRecvPacket packets[3];
	int files[2], sv[2], one = 1;

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
	fd_snapshot(before, sizeof(before));
	files[0] = new_file();
	files[1] = new_file();
	send_packet(sv[0], 3, 0, files, 2);
	send_packet(sv[0], 4, 1, NULL, 0);
	many_slots_init(slots, packets, 3, 64);

	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 3, PAL_FDS_MAX, MSG_DONTWAIT), 2);
	ck_assert_int_eq(packets[0].result, -EPROTO);
	ck_assert_int_eq(packets[1].result, -EPROTO);
	ck_assert_uint_eq(pal_fd_array_len(slots[0].fds), 0);

	many_slots_clear(slots, 3);
	close_all(files, 2);
	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_recv_many_msg_trunc)
{
	char before[8192], after[8192];
	ManySlot slots[4];
	PalRecvPacket packets[4];
	int files[4], sv[2];

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	fd_snapshot(before, sizeof(before));
	for (int i = 0; i < 4; i++)
		files[i] = new_file();
	send_packet(sv[0], 50, 0, &files[0], 1);
	send_packet(sv[0], 51, 1, &files[1], 2); /* too big, with fds */
	send_packet(sv[0], 52, 2, NULL, 0);      /* too big, without */
	send_packet(sv[0], 50, 3, &files[3], 1);
	many_slots_init(slots, packets, 4, 50);

	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 4, 4, MSG_DONTWAIT), 4);
	assert_packet(&slots[0], &packets[0], 50, 0, &files[0], 1);
	ck_assert_int_eq(packets[1].result, -EMSGSIZE);
	ck_assert_uint_eq(pal_fd_array_len(slots[1].fds), 0);
	ck_assert_int_eq(packets[2].result, -EMSGSIZE);
	assert_packet(&slots[3], &packets[3], 50, 3, &files[3], 1);

	many_slots_clear(slots, 4);
	close_all(files, 4);
	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_recv_many_eof)
{
	ManySlot slots[4];
	PalRecvPacket packets[4];
	int file, sv[2];
	ssize_t n;

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	file = new_file();
	send_packet(sv[0], 30, 0, &file, 1);
	send_packet(sv[0], 31, 1, NULL, 0);
	sv[0] = pal_close_fd(sv[0]);
	many_slots_init(slots, packets, 4, 64);

	/* The two packets, then the end of stream as packets of size 0. */
	n = pal_recv_many_with_fds(sv[1], packets, 4, 4, MSG_DONTWAIT);
	ck_assert_int_ge(n, 3);
	assert_packet(&slots[0], &packets[0], 30, 0, &file, 1);
	assert_packet(&slots[1], &packets[1], 31, 1, NULL, 0);
	for (ssize_t p = 2; p < n; p++) {
		ck_assert_int_eq(packets[p].result, 0);
		ck_assert_uint_eq(pal_fd_array_len(slots[p].fds), 0);
	}

	/* and again: the end of stream stays */
	n = pal_recv_many_with_fds(sv[1], packets, 2, 4, MSG_DONTWAIT);
	ck_assert_int_ge(n, 1);
	ck_assert_int_eq(packets[0].result, 0);

	/* blocking: the end does not block either */
	n = pal_recv_many_with_fds(sv[1], packets, 1, 4, 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(packets[0].result, 0);

	many_slots_clear(slots, 4);
	pal_close_fd(file);
	close_all(sv, 2);
}
END_TEST

START_TEST(test_recv_many_invalid)
{
	ManySlot slots[3];
	PalRecvPacket packets[PAL_RECV_MANY_MAX + 1] = { 0 };
	int sv[2];

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	many_slots_init(slots, packets, 3, 64);
	send_packet(sv[0], 9, 0, NULL, 0);

	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 0, 4, MSG_DONTWAIT), -EINVAL);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, PAL_RECV_MANY_MAX + 1, 4,
						MSG_DONTWAIT),
			 -EINVAL);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], NULL, 1, 4, MSG_DONTWAIT), -EINVAL);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 3, PAL_FDS_MAX + 1, MSG_DONTWAIT),
			 -EINVAL);
	/* a NULL iov with entries, in a later packet */
	packets[2].iov = NULL;
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 3, 4, MSG_DONTWAIT), -EINVAL);
	/* a bad socket */
	packets[2].iov = &slots[2].iov;
	ck_assert_int_eq(pal_recv_many_with_fds(-1, packets, 3, 4, MSG_DONTWAIT), -EBADF);

	/* none of that consumed the packet or touched the results */
	ck_assert_int_eq(packets[0].result, 12345);
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 3, 4, MSG_DONTWAIT), 1);
	assert_packet(&slots[0], &packets[0], 9, 0, NULL, 0);

	/* a NULL iov without entries is fine: the data is discarded */
	send_packet(sv[0], 9, 1, NULL, 0);
	packets[0].iov = NULL;
	packets[0].n_iov = 0;
	ck_assert_int_eq(pal_recv_many_with_fds(sv[1], packets, 1, 4, MSG_DONTWAIT), 1);
	ck_assert_int_eq(packets[0].result, -EMSGSIZE);

	many_slots_clear(slots, 3);
	close_all(sv, 2);
}
END_TEST

static Suite *fd_suite(void)
{
	Suite *s = suite_create("pal-fd");
	TCase *tc;

	tc = tcase_create("array");
	tcase_add_test(tc, test_array_append_get_steal);
	tcase_add_test(tc, test_array_append_take_consumes_on_failure);
	tcase_add_test(tc, test_array_grows);
	suite_add_tcase(s, tc);

	tc = tcase_create("flags");
	tcase_add_test(tc, test_flag_helpers);
	tcase_add_test(tc, test_socketpair);
	suite_add_tcase(s, tc);

	tc = tcase_create("send-recv");
	tcase_add_loop_test(tc, test_roundtrip_seqpacket, 0, 3);
	tcase_add_loop_test(tc, test_roundtrip_stream, 0, 3);
	tcase_add_test(tc, test_roundtrip_no_fds);
	tcase_add_test(tc, test_message_boundaries);
	tcase_add_test(tc, test_send_invalid);
	tcase_add_test(tc, test_recv_more_than_max);
	tcase_add_test(tc, test_recv_ctrunc);
	tcase_add_test(tc, test_recv_ctrunc_passcred);
	tcase_add_test(tc, test_recv_msg_trunc);
	tcase_add_test(tc, test_eof_and_epipe);
	tcase_add_test(tc, test_dontwait);
	suite_add_tcase(s, tc);

	tc = tcase_create("recv-many");
	tcase_add_test(tc, test_recv_many_batch);
	tcase_add_test(tc, test_recv_many_max_batch);
	tcase_add_test(tc, test_recv_many_fewer_queued);
	tcase_add_test(tc, test_recv_many_too_many_fds);
	tcase_add_test(tc, test_recv_many_foreign_cmsg);
	tcase_add_test(tc, test_recv_many_msg_trunc);
	tcase_add_test(tc, test_recv_many_eof);
	tcase_add_test(tc, test_recv_many_invalid);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(fd_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
