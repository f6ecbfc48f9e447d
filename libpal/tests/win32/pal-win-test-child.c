/* SPDX-License-Identifier: MIT */
/*
 * Helper child for test-win-spawn (Windows): runs the commands given as
 * arguments, in order, and prints one line per command on stdout so that
 * the test can compare the output with what it expects. Deliberately plain:
 * no libpal. Handle arguments are hexadecimal values, or "H" for the value
 * read by the last `readh`.
 *
 *   args                 "argc N", then "arg I HEX" per argument (UTF-8 as
 *                        hex) of the whole argv, argv[0] included; then exits
 *   env NAME             "env NAME=VALUE", or "env NAME unset"
 *   env-count            "env-count N" (entries not starting with '=', nor
 *                        those Wine adds: see added_by_wine())
 *   env-names            "env-names NAME..." in the order of the block, as
 *                        env-count counts them
 *   cwd                  "cwd DIR"
 *   echo TEXT            "TEXT"
 *   stderr TEXT          "TEXT" on stderr
 *   read-stdin           read stdin to its end, then "stdin N" (bytes)
 *   wait-stdin           read stdin to its end, print nothing
 *   readh                read one line "HEX" from stdin as the handle H
 *   handle-info HANDLE   "handle valid" or "handle invalid"
 *   handle-write HANDLE TEXT  write "TEXT\n" to the handle, then "wrote"
 *   close HANDLE         CloseHandle()
 *   section HANDLE SIZE  map read-only, "section TEXT" (the first SIZE
 *                        bytes); then "map-write denied|ok" for a writable
 *                        view of the same handle and "upgrade denied|ok" for
 *                        DuplicateHandle() of it to itself with write access
 *   in-job               "in-job 0|1"
 *   grandchild           start this program with "sleep 600000", no
 *                        handles inherited, then "grandchild PID"
 *   sleep MS             Sleep(MS)
 *   exit N               exit with code N (decimal, unsigned)
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <windows.h>

static HANDLE named_handle;

static void write_all(HANDLE h, const char *s, size_t n)
{
	DWORD done;

	while (n > 0 && h && h != INVALID_HANDLE_VALUE) {
		if (!WriteFile(h, s, (DWORD)n, &done, NULL))
			return;
		s += done;
		n -= done;
	}
}

static void say(const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	write_all(GetStdHandle(STD_OUTPUT_HANDLE), buf, (size_t)n);
}

static void die(const char *what)
{
	fprintf(stderr, "pal-win-test-child: %s: error %lu\n", what, GetLastError());
	ExitProcess(120);
}

static char *utf8(const wchar_t *w)
{
	int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
	char *s = malloc(n > 0 ? (size_t)n : 1);

	if (!s || n <= 0 || WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL) != n)
		die("utf8");
	return s;
}

static const wchar_t *need_arg(int argc, wchar_t **argv, int i)
{
	if (i >= argc) {
		fprintf(stderr, "pal-win-test-child: %ls needs an argument\n", argv[i - 1]);
		ExitProcess(121);
	}
	return argv[i];
}

static HANDLE parse_handle(const wchar_t *s)
{
	if (wcscmp(s, L"H") == 0)
		return named_handle;
	return (HANDLE)(uintptr_t)wcstoull(s, NULL, 16);
}

static size_t read_to_end(void)
{
	HANDLE in = GetStdHandle(STD_INPUT_HANDLE);
	char buf[4096];
	size_t total = 0;
	DWORD n;

	while (in && ReadFile(in, buf, sizeof(buf), &n, NULL) && n > 0)
		total += n;
	return total;
}

static void read_handle_line(void)
{
	HANDLE in = GetStdHandle(STD_INPUT_HANDLE);
	char line[64];
	size_t len = 0;
	DWORD n;
	char c;

	while (len < sizeof(line) - 1 && ReadFile(in, &c, 1, &n, NULL) && n == 1 && c != '\n')
		line[len++] = c;
	line[len] = 0;
	named_handle = (HANDLE)(uintptr_t)strtoull(line, NULL, 16);
}

static void section(HANDLE h, size_t size)
{
	HANDLE upgraded = NULL;
	char *view, *text;
	void *w;

	view = MapViewOfFile(h, FILE_MAP_READ, 0, 0, size);
	if (!view)
		die("MapViewOfFile");
	text = malloc(size + 1);
	if (!text)
		die("malloc");
	memcpy(text, view, size);
	text[size] = 0;
	say("section %s", text);
	free(text);
	UnmapViewOfFile(view);

	w = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, size);
	say("map-write %s", w ? "ok" : "denied");
	if (w)
		UnmapViewOfFile(w);

	if (DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &upgraded,
			    FILE_MAP_READ | FILE_MAP_WRITE, FALSE, 0)) {
		w = MapViewOfFile(upgraded, FILE_MAP_WRITE, 0, 0, size);
		say("upgrade %s", w ? "ok" : "denied");
		if (w)
			UnmapViewOfFile(w);
		CloseHandle(upgraded);
	} else {
		say("upgrade denied");
	}
}

static void grandchild(void)
{
	wchar_t self[MAX_PATH + 1], cmd[MAX_PATH + 64];
	STARTUPINFOW si = { .cb = sizeof(si) };
	PROCESS_INFORMATION pi;
	DWORD n = GetModuleFileNameW(NULL, self, MAX_PATH);

	if (n == 0 || n >= MAX_PATH)
		die("GetModuleFileNameW");
	swprintf(cmd, sizeof(cmd) / sizeof(cmd[0]), L"\"%ls\" sleep 600000", self);
	if (!CreateProcessW(self, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi))
		die("CreateProcessW");
	CloseHandle(pi.hThread);
	CloseHandle(pi.hProcess);
	say("grandchild %lu", pi.dwProcessId);
}

/*
 * Wine adds its own variables (WINE*, SystemDrive, SystemRoot) to every
 * process's environment, even one created with an empty block; Windows
 * adds none. Under Wine (ntdll exports wine_get_version) they are not
 * counted.
 */
static bool added_by_wine(const wchar_t *entry)
{
	static int wine = -1;

	if (wine < 0)
		wine = GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "wine_get_version") != NULL;
	return wine && (wcsncmp(entry, L"WINE", 4) == 0 || wcsncmp(entry, L"SystemDrive=", 12) == 0 ||
			wcsncmp(entry, L"SystemRoot=", 11) == 0);
}

int wmain(int argc, wchar_t **argv);
int wmain(int argc, wchar_t **argv)
{
	for (int i = 1; i < argc; i++) {
		const wchar_t *cmd = argv[i];

		if (wcscmp(cmd, L"args") == 0) {
			say("argc %d", argc);
			for (int j = 0; j < argc; j++) {
				char *s = utf8(argv[j]);
				char hex[4096] = "";
				size_t k = 0;

				for (const unsigned char *p = (const unsigned char *)s;
				     *p && k + 3 < sizeof(hex); p++, k += 2)
					sprintf(hex + k, "%02x", *p);
				say("arg %d %s", j, hex);
				free(s);
			}
			return 0;
		} else if (wcscmp(cmd, L"env") == 0) {
			const wchar_t *name = need_arg(argc, argv, ++i);
			wchar_t value[4096];
			DWORD n = GetEnvironmentVariableW(name, value, 4096);
			char *name8 = utf8(name);

			if (n == 0 && GetLastError() == ERROR_ENVVAR_NOT_FOUND) {
				say("env %s unset", name8);
			} else {
				char *value8;

				if (n >= 4096)
					die("GetEnvironmentVariableW");
				value8 = utf8(value);
				say("env %s=%s", name8, value8);
				free(value8);
			}
			free(name8);
		} else if (wcscmp(cmd, L"env-count") == 0 || wcscmp(cmd, L"env-names") == 0) {
			bool names = wcscmp(cmd, L"env-names") == 0;
			wchar_t *env = GetEnvironmentStringsW();
			char line[4096] = "";
			int count = 0;

			for (const wchar_t *p = env; p && *p; p += wcslen(p) + 1) {
				if (*p == L'=' || added_by_wine(p))
					continue;
				count++;
				if (names) {
					char *name = utf8(p);

					if (strchr(name, '='))
						*strchr(name, '=') = 0;
					strncat(line, " ", sizeof(line) - strlen(line) - 1);
					strncat(line, name, sizeof(line) - strlen(line) - 1);
					free(name);
				}
			}
			FreeEnvironmentStringsW(env);
			if (names)
				say("env-names%s", line);
			else
				say("env-count %d", count);
		} else if (wcscmp(cmd, L"cwd") == 0) {
			wchar_t dir[MAX_PATH + 1];
			char *dir8;

			if (!GetCurrentDirectoryW(MAX_PATH, dir))
				die("GetCurrentDirectoryW");
			dir8 = utf8(dir);
			say("cwd %s", dir8);
			free(dir8);
		} else if (wcscmp(cmd, L"echo") == 0) {
			char *s = utf8(need_arg(argc, argv, ++i));

			say("%s", s);
			free(s);
		} else if (wcscmp(cmd, L"stderr") == 0) {
			char *s = utf8(need_arg(argc, argv, ++i));

			write_all(GetStdHandle(STD_ERROR_HANDLE), s, strlen(s));
			write_all(GetStdHandle(STD_ERROR_HANDLE), "\n", 1);
			free(s);
		} else if (wcscmp(cmd, L"read-stdin") == 0) {
			say("stdin %zu", read_to_end());
		} else if (wcscmp(cmd, L"wait-stdin") == 0) {
			read_to_end();
		} else if (wcscmp(cmd, L"readh") == 0) {
			read_handle_line();
		} else if (wcscmp(cmd, L"handle-info") == 0) {
			DWORD flags;
			HANDLE h = parse_handle(need_arg(argc, argv, ++i));

			say("handle %s", GetHandleInformation(h, &flags) ? "valid" : "invalid");
		} else if (wcscmp(cmd, L"handle-write") == 0) {
			HANDLE h = parse_handle(need_arg(argc, argv, ++i));
			char *s = utf8(need_arg(argc, argv, ++i));
			DWORD done;
			size_t n = strlen(s);

			s[n] = '\n';
			if (!WriteFile(h, s, (DWORD)n + 1, &done, NULL) || done != n + 1)
				die("WriteFile");
			free(s);
			say("wrote");
		} else if (wcscmp(cmd, L"close") == 0) {
			if (!CloseHandle(parse_handle(need_arg(argc, argv, ++i))))
				die("CloseHandle");
		} else if (wcscmp(cmd, L"section") == 0) {
			HANDLE h = parse_handle(need_arg(argc, argv, ++i));
			size_t size = wcstoul(need_arg(argc, argv, ++i), NULL, 10);

			section(h, size);
		} else if (wcscmp(cmd, L"in-job") == 0) {
			BOOL in_job = FALSE;

			if (!IsProcessInJob(GetCurrentProcess(), NULL, &in_job))
				die("IsProcessInJob");
			say("in-job %d", in_job ? 1 : 0);
		} else if (wcscmp(cmd, L"grandchild") == 0) {
			grandchild();
		} else if (wcscmp(cmd, L"sleep") == 0) {
			Sleep(wcstoul(need_arg(argc, argv, ++i), NULL, 10));
		} else if (wcscmp(cmd, L"exit") == 0) {
			ExitProcess(wcstoul(need_arg(argc, argv, ++i), NULL, 10));
		} else {
			fprintf(stderr, "pal-win-test-child: unknown command %ls\n", cmd);
			return 122;
		}
	}
	return 0;
}
