/* SPDX-License-Identifier: MIT */
/*
 * Windows handle plumbing: close/duplicate helpers and the owning array.
 */
#include <stdlib.h>

#include <pal/pal.h>

#include "win32-private.h"

static bool is_handle(HANDLE h)
{
	return h != NULL && h != INVALID_HANDLE_VALUE;
}

PAL_API HANDLE pal_handle_close(HANDLE handle)
{
	if (is_handle(handle)) {
		DWORD saved = GetLastError();

		CloseHandle(handle);
		SetLastError(saved);
	}
	return NULL;
}

PAL_API int pal_handle_dup(HANDLE handle, HANDLE *ret_handle)
{
	HANDLE self = GetCurrentProcess();
	HANDLE h;

	if (!is_handle(handle) || !ret_handle)
		return -(int)ERROR_INVALID_HANDLE;
	if (!DuplicateHandle(self, handle, self, &h, 0, FALSE, DUPLICATE_SAME_ACCESS))
		return win_error();
	*ret_handle = h;
	return 0;
}

PAL_API int pal_handle_dup_to_process(HANDLE handle, HANDLE process, DWORD access,
				      HANDLE *ret_remote)
{
	HANDLE h;

	if (!is_handle(handle) || !process || !ret_remote)
		return -(int)ERROR_INVALID_PARAMETER;
	if (!DuplicateHandle(GetCurrentProcess(), handle, process, &h, access, FALSE,
			     access ? 0 : DUPLICATE_SAME_ACCESS))
		return win_error();
	*ret_remote = h;
	return 0;
}

PAL_API int pal_handle_set_inheritable(HANDLE handle, bool inheritable)
{
	if (!SetHandleInformation(handle, HANDLE_FLAG_INHERIT, inheritable ? HANDLE_FLAG_INHERIT : 0))
		return win_error();
	return 0;
}

PAL_API int pal_handle_is_inheritable(HANDLE handle)
{
	DWORD flags;

	if (!GetHandleInformation(handle, &flags))
		return win_error();
	return (flags & HANDLE_FLAG_INHERIT) ? 1 : 0;
}

struct PalHandleArray {
	HANDLE *handles;
	size_t len;
	size_t cap;
};

PAL_API PalHandleArray *pal_handle_array_new(void)
{
	return calloc(1, sizeof(PalHandleArray));
}

PAL_API void pal_handle_array_clear(PalHandleArray *array)
{
	if (!array)
		return;
	for (size_t i = 0; i < array->len; i++)
		array->handles[i] = pal_handle_close(array->handles[i]);
	array->len = 0;
}

PAL_API PalHandleArray *pal_handle_array_free(PalHandleArray *array)
{
	if (!array)
		return NULL;
	pal_handle_array_clear(array);
	free(array->handles);
	free(array);
	return NULL;
}

PAL_API int pal_handle_array_append_take(PalHandleArray *array, HANDLE handle)
{
	if (!is_handle(handle)) {
		return -(int)ERROR_INVALID_HANDLE;
	}
	if (!array) {
		pal_handle_close(handle);
		return -(int)ERROR_INVALID_PARAMETER;
	}
	if (array->len >= (size_t)INT_MAX) {
		pal_handle_close(handle);
		return -(int)ERROR_TOO_MANY_OPEN_FILES;
	}
	if (array->len == array->cap) {
		size_t cap = array->cap ? array->cap * 2 : 8;
		HANDLE *n = realloc(array->handles, cap * sizeof(HANDLE));

		if (!n) {
			pal_handle_close(handle);
			return -(int)ERROR_NOT_ENOUGH_MEMORY;
		}
		array->handles = n;
		array->cap = cap;
	}
	array->handles[array->len] = handle;
	return (int)array->len++;
}

PAL_API int pal_handle_array_append(PalHandleArray *array, HANDLE handle)
{
	HANDLE copy;
	int r;

	if (!array)
		return -(int)ERROR_INVALID_PARAMETER;
	r = pal_handle_dup(handle, &copy);
	if (r < 0)
		return r;
	return pal_handle_array_append_take(array, copy);
}

PAL_API size_t pal_handle_array_len(const PalHandleArray *array)
{
	return array ? array->len : 0;
}

PAL_API HANDLE pal_handle_array_get(const PalHandleArray *array, size_t index)
{
	if (!array || index >= array->len)
		return NULL;
	return array->handles[index];
}

PAL_API const HANDLE *pal_handle_array_peek_data(const PalHandleArray *array)
{
	return array ? array->handles : NULL;
}

PAL_API HANDLE pal_handle_array_steal(PalHandleArray *array, size_t index)
{
	HANDLE h;

	if (!array || index >= array->len)
		return NULL;
	h = array->handles[index];
	array->handles[index] = NULL;
	return h;
}
