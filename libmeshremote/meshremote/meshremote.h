/* SPDX-License-Identifier: MIT */
/**
 * libmeshremote: ports, nodes and channels.
 *
 * A port is one end of a bidirectional, unbounded, ordered message pipe.
 * Ports live in nodes (one per process and mesh); a port can be sent inside
 * a message to another node and keeps working there, with FIFO order and
 * exactly-once delivery preserved across any number of moves. Channels
 * (mpsc, oneshot, rpc) are what applications use; they are built on ports.
 *
 * Ownership: an argument documented (transfer full), or the fd or object of
 * a `_take` function, is consumed also on failure ("Consumes @ARG, also on
 * failure."); `_steal` moves ownership out; `_free`, `_unref` and `_close`
 * accept NULL and return void. Exceptions say "Exception to the ownership
 * rule:".
 *
 * Errors: GError (domain MESH_ERROR). Threads: every object may be used from
 * any thread unless its header says otherwise; no callback ever runs while a
 * library lock is held.
 *
 * Arguments: a pointer argument may be NULL only where its function's comment
 * says so (nullable); `_free` and `_unref` functions take NULL. A bad argument
 * (a NULL elsewhere, an error already set in a `GError **`) is a programming
 * error, checked with g_return_val_if_fail(): a critical, and the function's
 * failure value. What a function takes (transfer full) it releases then too,
 * as on any failure, unless its comment says otherwise.
 */
#pragma once

#define __MESHREMOTE_H_INSIDE__

#include <meshremote/mesh-node.h>
#include <meshremote/mesh-transport.h>
#include <meshremote/mesh-message.h>
#include <meshremote/mesh-port.h>
#include <meshremote/mesh-channel.h>
#ifndef _WIN32 /* the Unix transports; the ALPC node: <meshremote/mesh-alpc-node.h> */
#include <meshremote/mesh-unix-node.h>
#include <meshremote/mesh-p2p.h>
#endif
#include <meshremote/mesh-pipe.h>
#include <meshremote/mesh-cell.h>
#include <meshremote/mesh-cancel.h>

#undef __MESHREMOTE_H_INSIDE__
