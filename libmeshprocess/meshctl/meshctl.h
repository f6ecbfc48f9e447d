/* SPDX-License-Identifier: MIT */
/*
 * meshctl: the command-line tool of libmeshprocess (doc/meshctl.md).
 */
#pragma once

#include <stdio.h>

#include <meshprocess/meshprocess.h>

#include "meshctl.pb-c.h"

/* Every wait of meshctl is bounded by one of these. */
#define MESHCTL_WAIT_US (10 * G_USEC_PER_SEC)
#define MESHCTL_INSPECT_US (2 * G_USEC_PER_SEC)
#define MESHCTL_SHUTDOWN_US (5 * G_USEC_PER_SEC)

/* meshctl.c */
#define MESHCTL_ERROR (meshctl_error_quark())
GQuark meshctl_error_quark(void);
extern gboolean meshctl_verbose;
void meshctl_print_error(const char *what, const GError *error);

/* meshctl-host.c: a launched host's work (the MeshHostFunc). */
gboolean meshctl_host_main(MeshMessage *initial, gpointer user_data, GError **error);

/* meshctl-demo.c */
int meshctl_demo(int argc, char **argv);
int meshctl_serve(int argc, char **argv);

/* meshctl-bench.c */
int meshctl_bench(int argc, char **argv);
/* A host whose Setup role starts with "bench-". */
gboolean meshctl_bench_host(Meshctl__Setup *setup, GError **error);

/* meshctl-inspect.c */
int meshctl_inspect(int argc, char **argv);
int meshctl_stop(int argc, char **argv);
/* Prints mesh_inspect()'s JSON as a text tree; FALSE if it does not parse. */
gboolean meshctl_print_tree(FILE *out, const char *json, const char *indent, GError **error);

/* meshctl-json.c: just enough JSON to read mesh_inspect()'s output. */
typedef enum {
	MESHCTL_JSON_NULL,
	MESHCTL_JSON_BOOL,
	MESHCTL_JSON_NUMBER,
	MESHCTL_JSON_STRING,
	MESHCTL_JSON_ARRAY,
	MESHCTL_JSON_OBJECT,
} MeshctlJsonType;

typedef struct MeshctlJson MeshctlJson;
struct MeshctlJson {
	MeshctlJsonType type;
	gboolean boolean;
	char *text;        /* a string's value, or a number as written */
	GPtrArray *items;  /* array items, or object values */
	GPtrArray *keys;   /* object keys (char *), parallel to items */
};

MeshctlJson *meshctl_json_parse(const char *text, GError **error);
void meshctl_json_free(MeshctlJson *v);
/* Member @key of an object, or NULL. */
MeshctlJson *meshctl_json_get(const MeshctlJson *obj, const char *key);
/* A member's text (string or number) or NULL. */
const char *meshctl_json_get_text(const MeshctlJson *obj, const char *key);
/* Appends @s as a JSON string literal. */
void meshctl_json_append_string(GString *out, const char *s);
