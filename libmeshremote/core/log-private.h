/* SPDX-License-Identifier: MIT */
/*
 * Debug logging of peer faults and handled events, for libmeshremote and
 * libmeshprocess (each under its own G_LOG_DOMAIN; doc/index.md, "Logging").
 *
 * A peer can make these happen as often as it likes, so each call site logs
 * at most LOG_BURST lines a second; the first line logged after a second in
 * which some were left out says how many (MESH_SUPPRESSED). Lines go through
 * g_log_structured_array() at G_LOG_LEVEL_DEBUG with the fields MESSAGE,
 * PRIORITY, GLIB_DOMAIN, CODE_FILE, CODE_LINE, CODE_FUNC and the call's own
 * (MESH_NODE, MESH_PEER, MESH_PORT, MESH_MESH, MESH_HOST, MESH_PID).
 * Warnings (g_warning) remain for the process's own programming errors.
 *
 * Header-only (static inline): both libraries build it under their own
 * domain, without a symbol shared between them.
 */
#pragma once

#include <glib.h>

#define LOG_BURST 10
#define LOG_MAX_FIELDS 6

/* One call site's budget; static, zero-initialised. */
typedef struct {
	GMutex lock;
	gint64 window_start;
	guint count;
	guint suppressed;
} LogLimit;

static inline void log_emit(const char *file, const char *line, const char *func,
			    const char *const *fields, const char *suppressed, const char *message)
{
	GLogField f[7 + LOG_MAX_FIELDS] = {
		{"MESSAGE", message, -1},
		{"PRIORITY", "7", -1},
		{"GLIB_DOMAIN", G_LOG_DOMAIN, -1},
		{"CODE_FILE", file, -1},
		{"CODE_LINE", line, -1},
		{"CODE_FUNC", func, -1},
	};
	gsize n = 6;
	if (suppressed)
		f[n++] = (GLogField){"MESH_SUPPRESSED", suppressed, -1};
	for (gsize i = 0; fields && fields[i] && i < 2 * LOG_MAX_FIELDS; i += 2) {
		if (fields[i + 1])
			f[n++] = (GLogField){fields[i], fields[i + 1], -1};
	}
	g_log_structured_array(G_LOG_LEVEL_DEBUG, f, n);
}

static inline void log_debug_limited(LogLimit *limit, const char *file, const char *line,
				     const char *func, const char *const *fields,
				     const char *format, ...) G_GNUC_PRINTF(6, 7);

static inline void log_debug_limited(LogLimit *limit, const char *file, const char *line,
				     const char *func, const char *const *fields,
				     const char *format, ...)
{
	gint64 now = g_get_monotonic_time();
	guint left_out = 0;
	gboolean log;

	g_mutex_lock(&limit->lock);
	if (limit->window_start == 0 || now - limit->window_start >= G_USEC_PER_SEC) {
		left_out = limit->suppressed;
		limit->window_start = now;
		limit->count = 0;
		limit->suppressed = 0;
	}
	log = limit->count < LOG_BURST;
	if (log)
		limit->count++;
	else
		limit->suppressed++;
	g_mutex_unlock(&limit->lock);

	if (left_out) {
		char n[16], *message = g_strdup_printf("%u more lines like this one not logged",
						       left_out);
		g_snprintf(n, sizeof(n), "%u", left_out);
		log_emit(file, line, func, fields, n, message);
		g_free(message);
	}
	if (log) {
		va_list ap;
		va_start(ap, format);
		char *message = g_strdup_vprintf(format, ap);
		va_end(ap);
		log_emit(file, line, func, fields, NULL, message);
		g_free(message);
	}
}

/*
 * debug_log(fields, format, ...): a rate-limited debug line; @fields is
 * LOG_FIELDS("MESH_NODE", id, ...) or NULL (a NULL value leaves its field out).
 */
#define LOG_FIELDS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define debug_log(fields, ...)                                                                   \
	G_STMT_START                                                                             \
	{                                                                                        \
		static LogLimit log_limit_;                                                      \
		log_debug_limited(&log_limit_, __FILE__, G_STRINGIFY(__LINE__), G_STRFUNC,        \
				  fields, __VA_ARGS__);                                          \
	}                                                                                        \
	G_STMT_END

/* An id as text for a field: a buffer that lives until the end of the statement. */
#define LOG_ID(id) mesh_uuid_to_string((id), (char[33]){0})
