/* SPDX-License-Identifier: MIT */
/*
 * The generated code of meshremote/cancel.proto, exported: users name its
 * descriptors (mesh_remote__cancel_context__descriptor) in their own
 * messages, while the library builds with hidden visibility.
 */
#pragma GCC visibility push(default)
#include "meshremote/cancel.pb-c.c"
#pragma GCC visibility pop
