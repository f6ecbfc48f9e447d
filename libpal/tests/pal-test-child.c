/* SPDX-License-Identifier: MIT */
/*
 * Helper child for test-spawn: runs the commands given as arguments, in
 * order, and prints one line per command so that the test can compare the
 * whole output with what it expects. Deliberately plain: no libpal.
 *
 *   list-fds          "fds 0 1 2 ..." (open fds, sorted, the listing's own
 *                     directory fd left out)
 *   fdinfo N          "fdinfo N DEV INO", or "fdinfo N closed"
 *   env NAME          "env NAME=VALUE", or "env NAME unset"
 *   env-count         "env-count N"
 *   argv0             "argv0 ARGV0"
 *   argc              "argc N"
 *   echo TEXT         "TEXT"
 *   stderr TEXT       "TEXT" on fd 2
 *   out N             print everything after this to fd N instead of 1
 *   read-stdin        read fd 0 to end of file, then "stdin N" (bytes)
 *   sigmask           "sigblk HEX" and "sigign HEX" from /proc/self/status
 *   sid               "sid leader" or "sid inherited"
 *   pdeathsig         "pdeathsig N"
 *   ids               "ids R E S R E S groups G..." (uids, gids, groups)
 *   exit N            exit with status N
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static FILE *out;

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "pal-test-child: %s: %s\n", what, strerror(errno));
	exit(120);
}

static const char *need_arg(char **argv, int i, int argc)
{
	if (i >= argc) {
		fprintf(stderr, "pal-test-child: %s needs an argument\n", argv[i - 1]);
		exit(121);
	}
	return argv[i];
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

static void list_fds(void)
{
	struct dirent *de;
	int fds[1024];
	size_t n = 0;
	DIR *dir;

	dir = opendir("/proc/self/fd");
	if (!dir)
		die("opendir /proc/self/fd");
	while ((de = readdir(dir))) {
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(dir))
			continue;
		if (n < sizeof(fds) / sizeof(fds[0]))
			fds[n++] = fd;
	}
	closedir(dir);

	qsort(fds, n, sizeof(int), cmp_int);
	fputs("fds", out);
	for (size_t i = 0; i < n; i++)
		fprintf(out, " %d", fds[i]);
	fputc('\n', out);
}

static void status_line(const char *key, const char *label)
{
	char line[256];
	size_t len = strlen(key);
	FILE *f;

	f = fopen("/proc/self/status", "re");
	if (!f)
		die("fopen /proc/self/status");
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, len) == 0 && line[len] == ':') {
			fprintf(out, "%s %s", label, line + len + 2);
			break;
		}
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	out = stdout;

	for (int i = 1; i < argc; i++) {
		const char *cmd = argv[i];

		if (strcmp(cmd, "list-fds") == 0) {
			list_fds();
		} else if (strcmp(cmd, "fdinfo") == 0) {
			int fd = atoi(need_arg(argv, ++i, argc));
			struct stat st;

			if (fstat(fd, &st) < 0)
				fprintf(out, "fdinfo %d closed\n", fd);
			else
				fprintf(out, "fdinfo %d %ju %ju\n", fd, (uintmax_t)st.st_dev,
					(uintmax_t)st.st_ino);
		} else if (strcmp(cmd, "env") == 0) {
			const char *name = need_arg(argv, ++i, argc);
			const char *value = getenv(name);

			if (value)
				fprintf(out, "env %s=%s\n", name, value);
			else
				fprintf(out, "env %s unset\n", name);
		} else if (strcmp(cmd, "env-count") == 0) {
			size_t n = 0;

			while (environ && environ[n])
				n++;
			fprintf(out, "env-count %zu\n", n);
		} else if (strcmp(cmd, "argv0") == 0) {
			fprintf(out, "argv0 %s\n", argv[0]);
		} else if (strcmp(cmd, "argc") == 0) {
			fprintf(out, "argc %d\n", argc);
		} else if (strcmp(cmd, "echo") == 0) {
			fprintf(out, "%s\n", need_arg(argv, ++i, argc));
		} else if (strcmp(cmd, "stderr") == 0) {
			fprintf(stderr, "%s\n", need_arg(argv, ++i, argc));
			fflush(stderr);
		} else if (strcmp(cmd, "out") == 0) {
			int fd = atoi(need_arg(argv, ++i, argc));

			fflush(out);
			out = fdopen(fd, "w");
			if (!out)
				die("fdopen");
		} else if (strcmp(cmd, "read-stdin") == 0) {
			char buf[4096];
			size_t total = 0;
			ssize_t n;

			while ((n = read(STDIN_FILENO, buf, sizeof(buf))) != 0) {
				if (n < 0) {
					if (errno == EINTR)
						continue;
					die("read stdin");
				}
				total += (size_t)n;
			}
			fprintf(out, "stdin %zu\n", total);
		} else if (strcmp(cmd, "sigmask") == 0) {
			status_line("SigBlk", "sigblk");
			status_line("SigIgn", "sigign");
		} else if (strcmp(cmd, "sid") == 0) {
			fprintf(out, "sid %s\n", getsid(0) == getpid() ? "leader" : "inherited");
		} else if (strcmp(cmd, "pdeathsig") == 0) {
			int sig = -1;

			if (prctl(PR_GET_PDEATHSIG, &sig) < 0)
				die("prctl");
			fprintf(out, "pdeathsig %d\n", sig);
		} else if (strcmp(cmd, "ids") == 0) {
			uid_t ru, eu, su;
			gid_t rg, eg, sg, groups[64];
			int n;

			if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
				die("getres*id");
			n = getgroups(64, groups);
			if (n < 0)
				die("getgroups");
			fprintf(out, "ids %u %u %u %u %u %u groups", ru, eu, su, rg, eg, sg);
			for (int j = 0; j < n; j++)
				fprintf(out, " %u", groups[j]);
			fputc('\n', out);
		} else if (strcmp(cmd, "exit") == 0) {
			int status = atoi(need_arg(argv, ++i, argc));

			fflush(out);
			exit(status);
		} else {
			fprintf(stderr, "pal-test-child: unknown command %s\n", cmd);
			return 122;
		}
		fflush(out);
	}
	return 0;
}
