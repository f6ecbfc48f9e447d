/* SPDX-License-Identifier: MIT */
/* process_self_stats() from procfs (Windows: host-win32.c). */
#include <unistd.h>

#include "process-private.h"

void process_self_stats(int status_fd, guint64 *ret_rss_kib, guint *ret_threads)
{
	char *status = NULL;
	*ret_rss_kib = 0;
	*ret_threads = 0;
	if (status_fd >= 0) {
		/* Read afresh from the start: procfs regenerates the file. */
		GString *buf = g_string_sized_new(2048);
		char chunk[1024];
		off_t at = 0;
		ssize_t n;
		while (buf->len < 64 * 1024 && (n = pread(status_fd, chunk, sizeof(chunk), at)) > 0) {
			g_string_append_len(buf, chunk, n);
			at += n;
		}
		status = g_string_free(buf, FALSE);
	} else if (!g_file_get_contents("/proc/self/status", &status, NULL, NULL)) {
		return;
	}
	char **lines = g_strsplit(status, "\n", -1);
	for (char **line = lines; *line; line++) {
		if (g_str_has_prefix(*line, "VmRSS:"))
			*ret_rss_kib = g_ascii_strtoull(*line + 6, NULL, 10);
		else if (g_str_has_prefix(*line, "Threads:"))
			*ret_threads = (guint)g_ascii_strtoull(*line + 8, NULL, 10);
	}
	g_strfreev(lines);
	g_free(status);
}
