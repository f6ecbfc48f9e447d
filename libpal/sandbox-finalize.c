/* SPDX-License-Identifier: MIT */
/*
 * pal_sandbox_finalize(): no_new_privs, capabilities, Landlock, seccomp.
 */
#include <errno.h>

#include <pal/pal.h>

#include "sandbox-private.h"

PAL_API int pal_sandbox_finalize(PalSandbox *sandbox)
{
	if (!sandbox)
		return -EINVAL;
	sandbox->failed_step = "threads";
	return -EOPNOTSUPP; /* TODO: skeleton */
}
