/* SPDX-License-Identifier: MIT */
/*
 * TEST DOUBLE. A stand-in for the handful of NtAlpc* calls the ALPC node
 * uses (alpc-nt-private.h), built on byte-mode named pipes and
 * DuplicateHandle, because Wine has no ALPC. Linked only into tests; never
 * into libmeshremote. It emulates the semantics listed at MeshAlpcNtApi and
 * nothing more: no security descriptors, no impersonation, no completion
 * lists, no message zones. The object directory is not emulated either:
 * a port's pipe name is \\.\pipe\mesh-alpc-standin-<namespace>-<name>, the
 * namespace from the environment variable MESH_ALPC_STANDIN_NS (the test
 * sets it; children inherit it), and RootDirectory must only be a valid
 * handle. Isolation by the directory handle is the kernel's and is tested
 * nowhere here.
 */
#pragma once

#include "../alpc-nt-private.h"

/* The stand-in's table (process-wide state; any thread). */
const MeshAlpcNtApi *alpc_standin_api(void);

/* For lifetime tests: live port sections, section views (sent or received,
 * not yet deleted), and handles received but neither queried nor closed. */
void alpc_standin_counts(long *sections, long *views, long *unclaimed_handles);

/*
 * For tests that force a moment: the next connect (NtAlpcConnectPortEx) to
 * the port named @name (in any directory; NULL: none) sets @held and then
 * waits for @release before it goes on (the hook is then disarmed). Neither
 * handle is taken; both stay the caller's and must outlive the connect.
 */
void alpc_standin_hold_connect(const wchar_t *name, HANDLE held, HANDLE release);
