/* SPDX-License-Identifier: MIT */
/* Internal helpers of the Windows sources of libpal. */
#pragma once

#include <limits.h>
#include <windows.h>

/* The thread's last error as libpal's negative return value. */
static inline int win_error(void)
{
	DWORD e = GetLastError();

	if (e == 0 || e > (DWORD)INT_MAX)
		return -(int)ERROR_GEN_FAILURE;
	return -(int)e;
}
