/* SPDX-License-Identifier: MIT */
/*
 * Sealed memfds: create, seal, verify, map.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pal/pal.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

_Static_assert(PAL_MEMFD_SEALS == (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE),
	       "PAL_MEMFD_SEALS must match the kernel's seal bits");

PAL_API int pal_memfd_create(const char *name, size_t size)
{
	int fd;

	if (!name)
		name = "pal";
	if (size > (size_t)INT64_MAX)
		return -EFBIG;

	/*
	 * Ask for a non-executable memfd first (Linux 6.3+; it also keeps the
	 * kernel from logging about the missing exec flag); older kernels
	 * reject the flag with EINVAL.
	 */
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
	if (fd < 0 && errno == EINVAL)
		fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;

	if (size > 0 && ftruncate(fd, (off_t)size) < 0) {
		int r = -errno;

		pal_close_fd(fd);
		return r;
	}
	return fd;
}

PAL_API int pal_memfd_seal(int fd)
{
	if (fcntl(fd, F_ADD_SEALS, PAL_MEMFD_SEALS) < 0)
		return -errno;
	return 0;
}

PAL_API int pal_memfd_verify_seals(int fd, size_t *ret_size)
{
	struct stat st;
	int seals;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0)
		return -errno;
	if ((seals & PAL_MEMFD_SEALS) != PAL_MEMFD_SEALS)
		return -EPERM;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (st.st_size < 0 || (uintmax_t)st.st_size > SIZE_MAX)
		return -EFBIG;

	if (ret_size)
		*ret_size = (size_t)st.st_size;
	return 0;
}

PAL_API int pal_memfd_map(int fd, size_t size, bool writable, void **ret_addr)
{
	void *addr;

	if (size == 0 || !ret_addr)
		return -EINVAL;

	addr = mmap(NULL, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (addr == MAP_FAILED)
		return -errno;

	*ret_addr = addr;
	return 0;
}

PAL_API int pal_memfd_unmap(void *addr, size_t size)
{
	if (!addr)
		return 0;
	if (munmap(addr, size) < 0)
		return -errno;
	return 0;
}
