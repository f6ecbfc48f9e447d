/* SPDX-License-Identifier: MIT */
/*
 * Internals of spawn.c that tests reach by linking spawn.c's object
 * directly. Not installed, not exported.
 */
#pragma once

/**
 * spawn_refused_clone_flags:
 *
 * clone() flags that pal_spawn_run() treats as refused with EINVAL, so that
 * tests can run the fallbacks taken on kernels or under tools (valgrind)
 * that refuse them: CLONE_PIDFD (then pidfd_open()) and CLONE_VM (then a
 * fork-like child). 0 outside tests.
 */
extern int spawn_refused_clone_flags;

/**
 * spawn_refused_ns_flags:
 *
 * CLONE_NEW* flags that pal_spawn_run() treats as refused with EPERM, as an
 * unprivileged process without user namespaces sees them. 0 outside tests.
 */
extern int spawn_refused_ns_flags;
