/* SPDX-License-Identifier: MIT */
/*
 * A small JSON reader, enough for mesh_inspect()'s output and what a server
 * answers (meshctl does not depend on a JSON library for that). Strict:
 * anything malformed, nested deeper than 32 or with trailing data is an
 * error.
 */
#include <string.h>

#include "meshctl.h"

#define MAX_DEPTH 32

typedef struct {
	const char *p;
	const char *start;
	GError **error;
} Parser;

static gboolean fail(Parser *ps, const char *what)
{
	g_set_error(ps->error, MESHCTL_ERROR, 0, "bad JSON at offset %ld: %s",
		    (long)(ps->p - ps->start), what);
	return FALSE;
}

static void skip_ws(Parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
		ps->p++;
}

void meshctl_json_free(MeshctlJson *v)
{
	if (!v)
		return;
	g_free(v->text);
	if (v->items)
		g_ptr_array_free(v->items, TRUE);
	if (v->keys)
		g_ptr_array_free(v->keys, TRUE);
	g_free(v);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static gboolean parse_hex4(Parser *ps, gunichar *ret)
{
	gunichar u = 0;
	for (int i = 0; i < 4; i++) {
		int h = hex_value(ps->p[i]);
		if (h < 0)
			return fail(ps, "bad \\u escape");
		u = u * 16 + (gunichar)h;
	}
	ps->p += 4;
	*ret = u;
	return TRUE;
}

static char *parse_string(Parser *ps)
{
	GString *s = g_string_new(NULL);
	ps->p++; /* the quote */
	for (;;) {
		unsigned char c = (unsigned char)*ps->p;
		if (c == '"') {
			ps->p++;
			break;
		}
		if (c == '\0' || c < 0x20) {
			fail(ps, "unterminated string");
			goto err;
		}
		if (c != '\\') {
			g_string_append_c(s, (char)c);
			ps->p++;
			continue;
		}
		ps->p++;
		c = (unsigned char)*ps->p++;
		switch (c) {
		case '"': case '\\': case '/':
			g_string_append_c(s, (char)c);
			break;
		case 'b': g_string_append_c(s, '\b'); break;
		case 'f': g_string_append_c(s, '\f'); break;
		case 'n': g_string_append_c(s, '\n'); break;
		case 'r': g_string_append_c(s, '\r'); break;
		case 't': g_string_append_c(s, '\t'); break;
		case 'u': {
			gunichar u;
			if (!parse_hex4(ps, &u))
				goto err;
			if (u >= 0xd800 && u < 0xdc00 && ps->p[0] == '\\' && ps->p[1] == 'u') {
				gunichar lo;
				ps->p += 2;
				if (!parse_hex4(ps, &lo))
					goto err;
				if (lo >= 0xdc00 && lo < 0xe000)
					u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
				else
					u = 0xfffd;
			} else if (u >= 0xd800 && u < 0xe000) {
				u = 0xfffd;
			}
			g_string_append_unichar(s, u);
			break;
		}
		default:
			ps->p--;
			fail(ps, "bad escape");
			goto err;
		}
	}
	return g_string_free(s, FALSE);
err:
	g_string_free(s, TRUE);
	return NULL;
}

static MeshctlJson *parse_value(Parser *ps, int depth);

static MeshctlJson *json_new(MeshctlJsonType type)
{
	MeshctlJson *v = g_new0(MeshctlJson, 1);
	v->type = type;
	if (type == MESHCTL_JSON_ARRAY || type == MESHCTL_JSON_OBJECT)
		v->items = g_ptr_array_new_with_free_func((GDestroyNotify)meshctl_json_free);
	if (type == MESHCTL_JSON_OBJECT)
		v->keys = g_ptr_array_new_with_free_func(g_free);
	return v;
}

static MeshctlJson *parse_container(Parser *ps, int depth, gboolean object)
{
	MeshctlJson *v = json_new(object ? MESHCTL_JSON_OBJECT : MESHCTL_JSON_ARRAY);
	char close = object ? '}' : ']';

	ps->p++;
	skip_ws(ps);
	if (*ps->p == close) {
		ps->p++;
		return v;
	}
	for (;;) {
		skip_ws(ps);
		if (object) {
			if (*ps->p != '"') {
				fail(ps, "expected a key");
				goto err;
			}
			char *key = parse_string(ps);
			if (!key)
				goto err;
			g_ptr_array_add(v->keys, key);
			skip_ws(ps);
			if (*ps->p != ':') {
				g_ptr_array_add(v->items, NULL);
				fail(ps, "expected ':'");
				goto err;
			}
			ps->p++;
		}
		MeshctlJson *item = parse_value(ps, depth + 1);
		g_ptr_array_add(v->items, item);
		if (!item)
			goto err;
		skip_ws(ps);
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p == close) {
			ps->p++;
			return v;
		}
		fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
		goto err;
	}
err:
	meshctl_json_free(v);
	return NULL;
}

static MeshctlJson *parse_value(Parser *ps, int depth)
{
	if (depth > MAX_DEPTH) {
		fail(ps, "nested too deeply");
		return NULL;
	}
	skip_ws(ps);
	char c = *ps->p;
	if (c == '{' || c == '[')
		return parse_container(ps, depth, c == '{');
	if (c == '"') {
		char *s = parse_string(ps);
		if (!s)
			return NULL;
		MeshctlJson *v = json_new(MESHCTL_JSON_STRING);
		v->text = s;
		return v;
	}
	if (c == '-' || g_ascii_isdigit(c)) {
		const char *start = ps->p;
		if (*ps->p == '-')
			ps->p++;
		if (!g_ascii_isdigit(*ps->p)) {
			fail(ps, "bad number");
			return NULL;
		}
		while (g_ascii_isdigit(*ps->p) || strchr(".eE+-", *ps->p))
			ps->p++;
		MeshctlJson *v = json_new(MESHCTL_JSON_NUMBER);
		v->text = g_strndup(start, (gsize)(ps->p - start));
		return v;
	}
	static const struct {
		const char *word;
		MeshctlJsonType type;
		gboolean value;
	} words[] = {
		{"true", MESHCTL_JSON_BOOL, TRUE},
		{"false", MESHCTL_JSON_BOOL, FALSE},
		{"null", MESHCTL_JSON_NULL, FALSE},
	};
	for (gsize i = 0; i < G_N_ELEMENTS(words); i++) {
		gsize n = strlen(words[i].word);
		if (strncmp(ps->p, words[i].word, n) == 0) {
			ps->p += n;
			MeshctlJson *v = json_new(words[i].type);
			v->boolean = words[i].value;
			return v;
		}
	}
	fail(ps, c ? "unexpected character" : "unexpected end");
	return NULL;
}

MeshctlJson *meshctl_json_parse(const char *text, GError **error)
{
	Parser ps = {.p = text, .start = text, .error = error};
	MeshctlJson *v = parse_value(&ps, 0);
	if (!v)
		return NULL;
	skip_ws(&ps);
	if (*ps.p) {
		fail(&ps, "trailing data");
		meshctl_json_free(v);
		return NULL;
	}
	return v;
}

MeshctlJson *meshctl_json_get(const MeshctlJson *obj, const char *key)
{
	if (!obj || obj->type != MESHCTL_JSON_OBJECT)
		return NULL;
	for (guint i = 0; i < obj->keys->len; i++)
		if (strcmp(obj->keys->pdata[i], key) == 0)
			return obj->items->pdata[i];
	return NULL;
}

const char *meshctl_json_get_text(const MeshctlJson *obj, const char *key)
{
	MeshctlJson *v = meshctl_json_get(obj, key);
	if (!v || (v->type != MESHCTL_JSON_STRING && v->type != MESHCTL_JSON_NUMBER))
		return NULL;
	return v->text;
}

void meshctl_json_append_string(GString *out, const char *s)
{
	g_string_append_c(out, '"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		switch (*p) {
		case '"': g_string_append(out, "\\\""); break;
		case '\\': g_string_append(out, "\\\\"); break;
		case '\n': g_string_append(out, "\\n"); break;
		case '\t': g_string_append(out, "\\t"); break;
		case '\r': g_string_append(out, "\\r"); break;
		default:
			if (*p < 0x20)
				g_string_append_printf(out, "\\u%04x", *p);
			else
				g_string_append_c(out, (char)*p);
		}
	}
	g_string_append_c(out, '"');
}
