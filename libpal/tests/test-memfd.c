/* SPDX-License-Identifier: MIT */
/*
 * Tests of pal-memfd.h: create, fill, seal, pass, verify and map real
 * memfds; every kind of insufficiently sealed or foreign fd is rejected.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <pal/pal.h>

#define TMPFS_MAGIC_VALUE 0x01021994

static void fill(void *addr, size_t size)
{
	unsigned char *p = addr;

	for (size_t i = 0; i < size; i++)
		p[i] = (unsigned char)(i * 7 + 3);
}

static void assert_filled(const void *addr, size_t size)
{
	const unsigned char *p = addr;

	for (size_t i = 0; i < size; i++)
		ck_assert_uint_eq(p[i], (unsigned char)(i * 7 + 3));
}

START_TEST(test_create_seal_verify_map)
{
	const size_t size = 3 * 4096 + 100;
	size_t got = 0;
	void *addr;
	int fd, flags;

	fd = pal_memfd_create("pal-test", size);
	ck_assert_int_ge(fd, 0);
	flags = fcntl(fd, F_GETFD);
	ck_assert(flags & FD_CLOEXEC);

	/* not sealed yet */
	ck_assert_int_eq(pal_memfd_verify_seals(fd, &got), -EPERM);
	ck_assert_uint_eq(got, 0);

	ck_assert_int_eq(pal_memfd_map(fd, size, true, &addr), 0);
	fill(addr, size);

	/* a writable mapping blocks F_SEAL_WRITE */
	ck_assert_int_eq(pal_memfd_seal(fd), -EBUSY);
	ck_assert_int_eq(pal_memfd_verify_seals(fd, NULL), -EPERM);
	ck_assert_int_eq(pal_memfd_unmap(addr, size), 0);

	ck_assert_int_eq(pal_memfd_seal(fd), 0);
	ck_assert_int_eq(pal_memfd_verify_seals(fd, &got), 0);
	ck_assert_uint_eq(got, size);
	ck_assert_int_eq(pal_memfd_verify_seals(fd, NULL), 0);

	ck_assert_int_eq(pal_memfd_map(fd, size, false, &addr), 0);
	assert_filled(addr, size);
	ck_assert_int_eq(pal_memfd_unmap(addr, size), 0);

	/* the seals hold: no writable mapping, no write, no resize */
	addr = NULL;
	ck_assert_int_eq(pal_memfd_map(fd, size, true, &addr), -EPERM);
	ck_assert_ptr_null(addr);
	ck_assert_int_eq(write(fd, "x", 1), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(ftruncate(fd, 1), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(ftruncate(fd, (off_t)size * 2), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), -1);
	ck_assert_int_eq(errno, EPERM);

	pal_close_fd(fd);
}
END_TEST

START_TEST(test_pass_sealed_memfd)
{
	char buf[8] = "fd";
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	PalFdArray *array = pal_fd_array_new();
	size_t got = 0;
	int fd, sv[2], rfd;
	void *addr;

	fd = pal_memfd_create("pal-test", 4096);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pal_memfd_map(fd, 4096, true, &addr), 0);
	fill(addr, 4096);
	ck_assert_int_eq(pal_memfd_unmap(addr, 4096), 0);
	ck_assert_int_eq(pal_memfd_seal(fd), 0);

	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	iov.iov_len = 3;
	ck_assert_int_eq(pal_send_with_fds(sv[0], &iov, 1, &fd, 1, 0), 3);
	pal_close_fd(fd);
	iov.iov_len = sizeof(buf);
	ck_assert_int_eq(pal_recv_with_fds(sv[1], &iov, 1, array, 1, 0), 3);
	rfd = pal_fd_array_get(array, 0);

	ck_assert_int_eq(pal_memfd_verify_seals(rfd, &got), 0);
	ck_assert_uint_eq(got, 4096);
	ck_assert_int_eq(pal_memfd_map(rfd, got, false, &addr), 0);
	/* the mapping outlives the fd */
	pal_fd_array_free(array);
	assert_filled(addr, got);
	ck_assert_int_eq(pal_memfd_unmap(addr, got), 0);

	pal_close_fd(sv[0]);
	pal_close_fd(sv[1]);
}
END_TEST

START_TEST(test_partial_seals_rejected)
{
	/* every proper subset of the four seals is refused */
	for (int seals = 0; seals < PAL_MEMFD_SEALS; seals++) {
		int fd = pal_memfd_create("pal-test", 4096);

		ck_assert_int_ge(fd, 0);
		if (seals)
			ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
		ck_assert_int_eq(pal_memfd_verify_seals(fd, NULL), -EPERM);
		pal_close_fd(fd);
	}
}
END_TEST

START_TEST(test_unsealable_memfd_rejected)
{
	/* without MFD_ALLOW_SEALING the memfd is born with F_SEAL_SEAL only */
	int fd = memfd_create("pal-test", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 4096), 0);
	ck_assert_int_eq(pal_memfd_verify_seals(fd, NULL), -EPERM);
	ck_assert_int_eq(pal_memfd_seal(fd), -EPERM);
	ck_assert_int_eq(pal_memfd_verify_seals(fd, NULL), -EPERM);
	pal_close_fd(fd);
}
END_TEST

START_TEST(test_foreign_fds_rejected)
{
	const char *builddir = getenv("MESH_TEST_BUILDDIR");
	struct statfs sfs;
	int fds[2], fd;

	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	ck_assert_int_eq(pal_memfd_verify_seals(fds[0], NULL), -EINVAL);
	ck_assert_int_eq(pal_memfd_verify_seals(fds[1], NULL), -EINVAL);
	ck_assert_int_eq(pal_memfd_seal(fds[1]), -EINVAL);
	pal_close_fd(fds[0]);
	pal_close_fd(fds[1]);

	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pal_memfd_verify_seals(fd, NULL), -EINVAL);
	pal_close_fd(fd);

	/* a regular file: not sealable, or (on tmpfs) born with F_SEAL_SEAL */
	fd = open(builddir ? builddir : ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 4096), 0);
	ck_assert_int_eq(fstatfs(fd, &sfs), 0);
	ck_assert_int_eq(pal_memfd_verify_seals(fd, NULL),
			 sfs.f_type == TMPFS_MAGIC_VALUE ? -EPERM : -EINVAL);
	pal_close_fd(fd);

	ck_assert_int_eq(pal_memfd_verify_seals(-1, NULL), -EBADF);
	ck_assert_int_eq(pal_memfd_verify_seals(100000, NULL), -EBADF);
}
END_TEST

START_TEST(test_map_args)
{
	void *addr = NULL;
	size_t got = 1;
	int fd;

	fd = pal_memfd_create("pal-test", 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pal_memfd_map(fd, 0, false, &addr), -EINVAL);
	ck_assert_int_eq(pal_memfd_map(fd, 4096, false, NULL), -EINVAL);
	ck_assert_int_eq(pal_memfd_map(-1, 4096, false, &addr), -EBADF);
	ck_assert_ptr_null(addr);
	ck_assert_int_eq(pal_memfd_unmap(NULL, 4096), 0);

	/* an empty memfd seals and verifies with size 0 */
	ck_assert_int_eq(pal_memfd_seal(fd), 0);
	ck_assert_int_eq(pal_memfd_verify_seals(fd, &got), 0);
	ck_assert_uint_eq(got, 0);
	pal_close_fd(fd);

	/* a NULL name is allowed */
	fd = pal_memfd_create(NULL, 10);
	ck_assert_int_ge(fd, 0);
	pal_close_fd(fd);
	ck_assert_int_eq(pal_memfd_create("pal-test", SIZE_MAX), -EFBIG);
}
END_TEST

static Suite *memfd_suite(void)
{
	Suite *s = suite_create("pal-memfd");
	TCase *tc = tcase_create("memfd");

	tcase_add_test(tc, test_create_seal_verify_map);
	tcase_add_test(tc, test_pass_sealed_memfd);
	tcase_add_test(tc, test_partial_seals_rejected);
	tcase_add_test(tc, test_unsealable_memfd_rejected);
	tcase_add_test(tc, test_foreign_fds_rejected);
	tcase_add_test(tc, test_map_args);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(memfd_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
