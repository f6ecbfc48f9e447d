/* SPDX-License-Identifier: MIT */
/**
 * libmeshprocess: a mesh of processes, coordinated from one parent.
 *
 * The parent makes a Mesh, launches hosts (child processes that join the
 * mesh through an invitation and get an initial message), talks to them over
 * channels carried in that message, and can crash, inspect and shut them down.
 * Unrelated processes join through a listening socket (mesh_listen() and
 * mesh_connect()). A host program calls mesh_try_run_host() first thing in
 * main().
 *
 * Ownership: as in libmeshremote: an argument documented (transfer full) is
 * consumed also on failure ("Consumes @ARG, also on failure."); `_free`
 * accepts NULL and returns void.
 *
 * Errors: GError, domain MESH_PROCESS_ERROR (and MESH_ERROR from
 * libmeshremote). Threads: every function may be called from any thread;
 * the coordinator runs on its own thread unless a GMainContext is given.
 *
 * Arguments, as in libmeshremote: a pointer argument may be NULL only where
 * its function's comment says so; `_free` functions take NULL. A bad argument
 * is a programming error, checked with g_return_val_if_fail(): a critical,
 * and the failure value; what the function takes (transfer full) it releases
 * then too, as on any failure.
 */
#pragma once

#define __MESHPROCESS_H_INSIDE__

#include <meshprocess/mesh-process.h>
#include <meshprocess/mesh-worker.h>

#undef __MESHPROCESS_H_INSIDE__
