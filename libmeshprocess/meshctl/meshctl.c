/* SPDX-License-Identifier: MIT */
/*
 * meshctl: the command-line tool of libmeshprocess (doc/meshctl.md).
 *
 * The same executable is the parent and, re-run by mesh_launch_host(), every
 * host: mesh_try_run_host() comes first in main().
 */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "meshctl.h"

G_DEFINE_QUARK(meshctl-error-quark, meshctl_error)

gboolean meshctl_verbose;

typedef struct {
	const char *name;
	const char *args;
	const char *summary;
	int (*run)(int argc, char **argv);
} Command;

static const Command commands[] = {
	{"demo", "", "run the demonstration: hosts, work over channels, a moved port, RPCs, a crash",
	 meshctl_demo},
	{"serve", "SOCKET", "keep a mesh of hosts running and answer inspect requests on SOCKET",
	 meshctl_serve},
	{"inspect", "SOCKET", "print the tree of the mesh serving on SOCKET", meshctl_inspect},
	{"stop", "SOCKET", "ask the mesh serving on SOCKET to shut down", meshctl_stop},
	{"bench", "[FILTER…]", "measure mesh beside the IPC peer baselines (TSV on stdout)",
	 meshctl_bench},
};

void meshctl_print_error(const char *what, const GError *error)
{
	if (error)
		fprintf(stderr, "meshctl: %s: %s\n", what, error->message);
	else
		fprintf(stderr, "meshctl: %s\n", what);
}

/*
 * Library logs: messages and debug output only with --verbose (or
 * MESHCTL_VERBOSE in a host's environment); warnings always, tersely.
 */
static void log_handler(const char *domain, GLogLevelFlags level, const char *message,
			gpointer data)
{
	const char *what;
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		what = "critical";
	else if (level & G_LOG_LEVEL_WARNING)
		what = "warning";
	else if (!meshctl_verbose)
		return;
	else if (level & G_LOG_LEVEL_MESSAGE)
		what = "message";
	else if (level & G_LOG_LEVEL_INFO)
		what = "info";
	else
		what = "debug";
	fprintf(stderr, "meshctl[%d]: %s%s%s: %s\n", (int)getpid(), domain ? domain : "",
		domain ? " " : "", what, message);
}

/* The libraries' structured lines (their debug output) go the same way. */
static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
				   gpointer data)
{
	const char *domain = NULL, *message = NULL;
	for (gsize i = 0; i < n_fields; i++) {
		if (fields[i].length != -1)
			continue;
		if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0)
			domain = fields[i].value;
		else if (strcmp(fields[i].key, "MESSAGE") == 0)
			message = fields[i].value;
	}
	log_handler(domain, level, message ? message : "", data);
	return G_LOG_WRITER_HANDLED;
}

static void print_usage(FILE *out)
{
	fprintf(out,
		"Usage: meshctl COMMAND [OPTION…] [ARG…]\n"
		"\n"
		"The command-line tool of libmeshprocess: a parent process and its hosts,\n"
		"joined in a mesh, talking over channels.\n"
		"\n"
		"Commands:\n");
	for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
		char *head = g_strdup_printf("%s %s", commands[i].name, commands[i].args);
		fprintf(out, "  %-16s %s\n", head, commands[i].summary);
		g_free(head);
	}
	fprintf(out,
		"  %-16s %s\n"
		"\n"
		"Options:\n"
		"  -h, --help       show this help\n"
		"  --version        print the version\n"
		"\n"
		"\"meshctl help COMMAND\" or \"meshctl COMMAND --help\" shows a command's options.\n"
		"Exit status: 0 on success, 1 on failure, 2 on a usage error.\n"
		"Manual: doc/meshctl.md (installed as share/doc/mesh/meshctl.md).\n",
		"help [COMMAND]", "show this help, or a command's");
}

static const Command *find_command(const char *name)
{
	for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int run_help(const char *name)
{
	if (!name) {
		print_usage(stdout);
		return 0;
	}
	const Command *c = find_command(name);
	if (!c) {
		fprintf(stderr, "meshctl: no command \"%s\" (see meshctl --help)\n", name);
		return 2;
	}
	char *args[] = {(char *)c->name, (char *)"--help", NULL};
	return c->run(2, args); /* GOption prints the help and exits 0 */
}

int main(int argc, char **argv)
{
	GError *error = NULL;

	meshctl_verbose = getenv("MESHCTL_VERBOSE") != NULL;
	g_log_set_default_handler(log_handler, NULL);
	g_log_set_writer_func(log_writer, NULL, NULL);

	/* A launched host runs its work here and never returns. */
	if (getenv(MESH_WORKER_INVITATION)) {
		/* The demo crashes a host on purpose: no core file for that. */
		struct rlimit no_core = {0, 0};
		setrlimit(RLIMIT_CORE, &no_core);
	}
	if (!mesh_try_run_host("mesh", meshctl_host_main, NULL, &error)) {
		fprintf(stderr, "meshctl host[%d]: %s\n", (int)getpid(), error->message);
		g_error_free(error);
		return 1;
	}

	setlocale(LC_ALL, "");
	g_set_prgname("meshctl");

	/* The command is the first argument that is not an option. */
	int at = 1;
	while (at < argc && argv[at][0] == '-' && strcmp(argv[at], "--") != 0)
		at++;
	if (at >= argc) {
		for (int i = 1; i < argc; i++) {
			if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 ||
			    strcmp(argv[i], "-?") == 0) {
				print_usage(stdout);
				return 0;
			}
			if (strcmp(argv[i], "--version") == 0) {
				printf("meshctl %s\n", MESHCTL_VERSION);
				return 0;
			}
		}
		if (argc > 1)
			fprintf(stderr, "meshctl: unknown option %s\n\n", argv[1]);
		print_usage(stderr);
		return 2;
	}
	if (strcmp(argv[at], "--") == 0) {
		fprintf(stderr, "meshctl: no command before --\n");
		return 2;
	}
	const char *name = argv[at];
	if (strcmp(name, "help") == 0)
		return run_help(at + 1 < argc ? argv[at + 1] : NULL);
	const Command *c = find_command(name);
	if (!c) {
		fprintf(stderr, "meshctl: no command \"%s\" (see meshctl --help)\n", name);
		return 2;
	}

	/* The command's own argv: its name, then every other argument in order. */
	char **sub = g_new0(char *, argc + 1);
	int n = 0;
	sub[n++] = argv[at];
	for (int i = 1; i < argc; i++)
		if (i != at)
			sub[n++] = argv[i];
	int status = c->run(n, sub);
	g_free(sub);
	return status;
}
