/* SPDX-License-Identifier: MIT */
#pragma once

#include "process-private.h"

/* SensitivityLevel's variants (their field numbers). */
enum {
	PROCESS_SENSITIVITY_SAFE = 1,
	PROCESS_SENSITIVITY_UNSPECIFIED = 2,
	PROCESS_SENSITIVITY_SENSITIVE = 3,
};

/*
 * Upstream's InitialMessage<T> {1 requests, 2 init_message: T} plus our
 * field 3 (the events port, NULL to leave it out, as for an upstream
 * host) and field 4 (@pid, the host's pid as the parent sees it, varint:
 * in a PID namespace the host's getpid() is 1; written only with @events
 * or without @requests, and when not 0). @init is T, a message; its bytes
 * become field 2 and its resources follow @requests. @requests NULL
 * leaves field 1 out: a spare's hand-out (the spare got its request
 * channel in its hello), never for an upstream host. Consumes @requests,
 * @init and @events.
 */
MeshMessage *process_initial_message_new(MeshPort *requests, MeshMessage *init,
					 MeshPort *events, guint32 pid);

/*
 * Parses an InitialMessage (taken). Unknown fields are skipped and their
 * resources released, as upstream's decoder does; a missing field 2 is an
 * empty message. A missing field 1 is an error unless @requests_optional
 * (a spare's hand-out), which sets *@ret_requests to NULL. @ret_events (nullable) gets NULL without field 3. Errors:
 * MESH_PROCESS_ERROR_INVITATION. @ret_pid (nullable) gets field 4, 0
 * without it.
 */
gboolean process_initial_message_parse(MeshMessage *msg, gboolean requests_optional,
				       MeshPort **ret_requests,
				       MeshMessage **ret_init, MeshPort **ret_events,
				       guint32 *ret_pid, GError **error);

/*
 * HostRequest::Inspect(Deferred) for the whole tree down to @depth, at the
 * highest sensitivity (the parent may see all of its hosts), the reply to
 * go to @node (taken), a OneshotSender<InternalNode>'s port.
 */
MeshProcess__HostRequest *process_inspect_request_new(MeshPort *node, guint64 depth);

/* How deep an inspect asks a host that is not known as a C host. */
#define PROCESS_INSPECT_DEPTH 64

/*
 * Asks a host for its report on @requests (borrowed): a C host (@deferred
 * FALSE) with our HostInspectJson, any other (a Rust host, or one not
 * joined yet) with upstream's Inspect(Deferred) down to
 * PROCESS_INSPECT_DEPTH, since our request would fail a Rust host's
 * request channel. Returns (transfer full) where the answer comes: an
 * InspectReply, or an InspectNode when @deferred.
 */
MeshOneshotReceiver *process_inspect_ask(MeshSender *requests, gboolean deferred);

/* {"error": @message} (transfer full), a host's report when it gave none. */
char *process_inspect_error_json(const char *message);

/*
 * The InternalNode that answers @req for a host whose report is @json
 * (host.c's inspect_self()): objects and arrays become directories (an
 * array's entries are named 0, 1, ...), null is "unevaluated", numbers are
 * Unsigned, Signed or Double values. Path, depth, update and number format
 * follow upstream's Request/Response.
 */
MeshProcess__InspectNode *process_inspect_respond(const char *json,
						  const MeshProcess__InspectDeferredInner *req);

/* An InternalNode as JSON (transfer full), for the parent's report. */
char *process_inspect_node_to_json(const MeshProcess__InspectNode *node);
