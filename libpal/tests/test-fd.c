/* SPDX-License-Identifier: MIT */
/*
 * Tests of pal-fd.h: the fd array, SCM_RIGHTS send/receive over real
 * socketpairs, and the flag helpers. Linked with fd.c's object, so that the
 * internal pal_recv_with_fds_control() can force a real MSG_CTRUNC.
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

	ck_assert_int_eq(pal_recv_with_fds_control(sock, &iov, 1, array, max_fds, 0, control_len),
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

static Suite *fd_suite(void)
{
	Suite *s = suite_create("pal-fd");
	TCase *tc;

	tc = tcase_create("array");
	tcase_add_test(tc, test_array_append_get_steal);
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
