/* SPDX-License-Identifier: MIT */
/*
 * Counts log lines of this process by what their MESSAGE contains, at any
 * level, structured or not: a writer function (GLib takes one per process,
 * so it is installed once) that counts, then writes as GLib would.
 */
#pragma once

#include <glib.h>
#include <string.h>

#define LOG_COUNT_MAX 4

static const char *log_count_needles[LOG_COUNT_MAX];
static gint log_count_hits[LOG_COUNT_MAX];

static GLogWriterOutput log_count_writer(GLogLevelFlags level, const GLogField *fields,
					 gsize n_fields, gpointer data)
{
	for (gsize i = 0; i < n_fields; i++) {
		if (strcmp(fields[i].key, "MESSAGE") != 0 || fields[i].length != -1)
			continue;
		for (int k = 0; k < LOG_COUNT_MAX; k++) {
			const char *needle = g_atomic_pointer_get(&log_count_needles[k]);
			if (needle && strstr(fields[i].value, needle))
				g_atomic_int_inc(&log_count_hits[k]);
		}
	}
	return g_log_writer_default(level, fields, n_fields, data);
}

/* Starts counting lines that contain @needle; returns the counter's index. */
static G_GNUC_UNUSED int log_count_watch(const char *needle)
{
	static gsize installed;
	if (g_once_init_enter(&installed)) {
		g_log_set_writer_func(log_count_writer, NULL, NULL);
		g_once_init_leave(&installed, 1);
	}
	for (int k = 0; k < LOG_COUNT_MAX; k++) {
		if (g_atomic_pointer_compare_and_exchange(&log_count_needles[k], NULL, needle)) {
			g_atomic_int_set(&log_count_hits[k], 0);
			return k;
		}
	}
	g_assert_not_reached();
}

static G_GNUC_UNUSED gint log_count_get(int k)
{
	return g_atomic_int_get(&log_count_hits[k]);
}

/* Stops counter @k. */
static G_GNUC_UNUSED void log_count_stop(int k)
{
	g_atomic_pointer_set(&log_count_needles[k], NULL);
}
