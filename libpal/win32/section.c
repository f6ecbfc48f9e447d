/* SPDX-License-Identifier: MIT */
/*
 * Sections: pagefile-backed shared memory for large events.
 */
#include <stdint.h>

#include <pal/pal.h>

#include "win32-private.h"

/* NtQuerySection(SectionBasicInformation), from ntdll at run time. */
typedef struct {
	PVOID base_address;
	ULONG attributes;
	LARGE_INTEGER size;
} SectionBasicInformation;

typedef LONG(NTAPI *NtQuerySectionFunc)(HANDLE, int, PVOID, SIZE_T, PSIZE_T);
typedef ULONG(NTAPI *RtlNtStatusToDosErrorFunc)(LONG);

PAL_API int pal_section_create(size_t size, HANDLE *ret_section)
{
	uint64_t size64 = size;
	HANDLE h;

	if (size == 0 || !ret_section)
		return -(int)ERROR_INVALID_PARAMETER;
	h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE | SEC_COMMIT,
			       (DWORD)(size64 >> 32), (DWORD)size64, NULL);
	if (!h)
		return win_error();
	*ret_section = h;
	return 0;
}

PAL_API int pal_section_get_size(HANDLE section, size_t *ret_size)
{
	static NtQuerySectionFunc query;
	static RtlNtStatusToDosErrorFunc to_dos;
	SectionBasicInformation info;
	LONG status;

	if (!section || !ret_size)
		return -(int)ERROR_INVALID_PARAMETER;
	if (!query) {
		HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");

		if (!ntdll)
			return win_error();
		to_dos = (RtlNtStatusToDosErrorFunc)(void (*)(void))GetProcAddress(
			ntdll, "RtlNtStatusToDosError");
		query = (NtQuerySectionFunc)(void (*)(void))GetProcAddress(ntdll, "NtQuerySection");
		if (!query || !to_dos)
			return -(int)ERROR_PROC_NOT_FOUND;
	}
	status = query(section, 0, &info, sizeof(info), NULL);
	if (status < 0) {
		ULONG e = to_dos(status);

		return e && e <= (ULONG)INT_MAX ? -(int)e : -(int)ERROR_GEN_FAILURE;
	}
	if ((uint64_t)info.size.QuadPart > SIZE_MAX)
		return -(int)ERROR_ARITHMETIC_OVERFLOW;
	*ret_size = (size_t)info.size.QuadPart;
	return 0;
}

PAL_API int pal_section_dup_read_only(HANDLE section, HANDLE process, HANDLE *ret_handle)
{
	HANDLE h;

	if (!section || !ret_handle)
		return -(int)ERROR_INVALID_PARAMETER;
	if (!process)
		process = GetCurrentProcess();
	if (!DuplicateHandle(GetCurrentProcess(), section, process, &h,
			     FILE_MAP_READ | SECTION_QUERY, FALSE, 0))
		return win_error();
	*ret_handle = h;
	return 0;
}

PAL_API int pal_section_map(HANDLE section, size_t size, bool writable, void **ret_addr)
{
	void *addr;

	if (!section || size == 0 || !ret_addr)
		return -(int)ERROR_INVALID_PARAMETER;
	addr = MapViewOfFile(section, writable ? FILE_MAP_WRITE : FILE_MAP_READ, 0, 0, size);
	if (!addr)
		return win_error();
	*ret_addr = addr;
	return 0;
}

PAL_API int pal_section_unmap(void *addr)
{
	if (!addr)
		return 0;
	if (!UnmapViewOfFile(addr))
		return win_error();
	return 0;
}
