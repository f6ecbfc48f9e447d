/* SPDX-License-Identifier: MIT */
/*
 * Helper child for test-sandbox: reads its profile with
 * pal_sandbox_new_from_env(), then runs the commands given as arguments, in
 * order, printing one line each (errors as errno names) and flushing after
 * each, so that a test sees everything up to a kill.
 *
 *   from-env          "from-env ok|none|ERRNO"
 *   finalize          "finalize ok" or "finalize ERRNO STEP"
 *   finalize-early    "finalize-early ok" or "finalize-early ERRNO STEP"
 *   worker            starts a thread that runs the worker-* commands
 *   worker-open PATH  the worker opens PATH: "worker-open PATH ok|ERRNO"
 *   worker-caps       "worker-caps eff=HEX prm=HEX" of the worker thread
 *   worker-forbidden  the worker calls personality(0xffffffff):
 *                     "worker-forbidden returned" unless killed
 *   status            "status ns=N tmp=B nnp=B caps=B ll=N sc=N fin=B"
 *   env NAME          "env NAME=VALUE" or "env NAME unset"
 *   ns                "ns user=INO mnt=INO net=INO pid=INO ipc=INO uts=INO"
 *   pid               "pid N"
 *   ids               "ids UID EUID GID EGID"
 *   caps              "caps eff=HEX prm=HEX inh=HEX bnd=HEX amb=HEX" (syscalls, no /proc)
 *   nnp               "nnp N"
 *   rlimit NAME       "rlimit NAME SOFT HARD" (nofile, nproc, core, fsize)
 *   list-fds          "fds 0 1 2 ..."
 *   ls DIR            "ls DIR N" (entries other than . and ..) or "ls DIR ERRNO"
 *   open PATH r|w     "open PATH ok" or "open PATH ERRNO" (w creates)
 *   exec PATH [ARG]   execs (output then comes from PATH) or "exec ERRNO"
 *   socket inet|unix  "socket FAMILY ok" or "socket FAMILY ERRNO"
 *   forbidden         calls personality(0xffffffff), outside every allow-list:
 *                     "forbidden returned" unless killed
 *   thread            starts and joins a thread: "thread ok" or "thread ERRNO"
 *   thread-live       starts a thread that stays: "thread-live ok" or "... ERRNO"
 *   race              a thread and main write a global unlocked (a data race
 *                     for ThreadSanitizer to report): "race N"
 *   exit N            exit with status N
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pal/pal.h>

static const char *errname(int err)
{
	static char buf[32];

	switch (err) {
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOSYS: return "ENOSYS";
	case EALREADY: return "EALREADY";
	case EROFS: return "EROFS";
	default:
		snprintf(buf, sizeof(buf), "E%d", err);
		return buf;
	}
}

static const char *need_arg(char **argv, int i, int argc)
{
	if (i >= argc) {
		fprintf(stderr, "pal-sandbox-child: %s needs an argument\n", argv[i - 1]);
		exit(121);
	}
	return argv[i];
}

static unsigned long long ns_ino(const char *name)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	return stat(path, &st) < 0 ? 0 : (unsigned long long)st.st_ino;
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
	DIR *dir = opendir("/proc/self/fd");

	if (!dir) {
		printf("fds %s\n", errname(errno));
		return;
	}
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.' && atoi(de->d_name) != dirfd(dir) && n < 1024)
			fds[n++] = atoi(de->d_name);
	closedir(dir);
	qsort(fds, n, sizeof(int), cmp_int);
	printf("fds");
	for (size_t i = 0; i < n; i++)
		printf(" %d", fds[i]);
	printf("\n");
}

static void *thread_main(void *arg)
{
	return arg;
}

static int racy;

static void *race_main(void *arg)
{
	racy++;
	return arg;
}

static int worker_cmd[2], worker_done[2];
static const char *worker_path;

static void *worker_main(void *arg)
{
	char c;

	while (read(worker_cmd[0], &c, 1) == 1) {
		if (c == 'o') {
			int fd = open(worker_path, O_RDONLY | O_CLOEXEC);

			printf("worker-open %s %s\n", worker_path, fd < 0 ? errname(errno) : "ok");
			if (fd >= 0)
				close(fd);
		} else if (c == 'c') {
			struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
			struct __user_cap_data_struct d[2] = { 0 };

			syscall(SYS_capget, &hdr, d);
			printf("worker-caps eff=%llx prm=%llx\n",
			       (unsigned long long)d[1].effective << 32 | d[0].effective,
			       (unsigned long long)d[1].permitted << 32 | d[0].permitted);
		} else if (c == 'f') {
			syscall(SYS_personality, 0xffffffffUL);
			printf("worker-forbidden returned\n");
		}
		fflush(stdout);
		if (write(worker_done[1], "x", 1) != 1)
			break;
	}
	return arg;
}

static void worker_run(char c)
{
	char done;

	if (write(worker_cmd[1], &c, 1) != 1 || read(worker_done[0], &done, 1) != 1) {
		fprintf(stderr, "pal-sandbox-child: no worker\n");
		exit(123);
	}
}

static void *thread_stay(void *arg)
{
	for (;;)
		pause();
	return arg;
}

int main(int argc, char **argv)
{
	PalSandbox *sandbox = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *cmd = argv[i];

		if (strcmp(cmd, "from-env") == 0) {
			int r = pal_sandbox_new_from_env(&sandbox);

			printf("from-env %s\n", r < 0 ? errname(-r) : sandbox ? "ok" : "none");
		} else if (strcmp(cmd, "finalize") == 0) {
			int r = pal_sandbox_finalize(sandbox);

			if (r < 0)
				printf("finalize %s %s\n", errname(-r),
				       pal_sandbox_get_failed_step(sandbox) ?: "-");
			else
				printf("finalize ok\n");
		} else if (strcmp(cmd, "finalize-early") == 0) {
			int r = pal_sandbox_finalize_early(sandbox);

			if (r < 0)
				printf("finalize-early %s %s\n", errname(-r),
				       pal_sandbox_get_failed_step(sandbox) ?: "-");
			else
				printf("finalize-early ok\n");
		} else if (strcmp(cmd, "worker") == 0) {
			pthread_t t;

			if (pipe(worker_cmd) < 0 || pipe(worker_done) < 0 ||
			    pthread_create(&t, NULL, worker_main, NULL) != 0) {
				printf("worker %s\n", errname(errno));
				continue;
			}
			printf("worker ok\n");
		} else if (strcmp(cmd, "worker-open") == 0) {
			worker_path = need_arg(argv, ++i, argc);
			worker_run('o');
		} else if (strcmp(cmd, "worker-caps") == 0) {
			worker_run('c');
		} else if (strcmp(cmd, "worker-forbidden") == 0) {
			worker_run('f');
		} else if (strcmp(cmd, "status") == 0) {
			PalSandboxStatus st;

			pal_sandbox_get_status(&st);
			printf("status ns=%u tmp=%d nnp=%d caps=%d ll=%d sc=%d fin=%d\n",
			       st.namespaces, st.private_tmp, st.no_new_privs,
			       st.capabilities_dropped, st.landlock_abi, (int)st.seccomp,
			       st.finalized);
		} else if (strcmp(cmd, "env") == 0) {
			const char *name = need_arg(argv, ++i, argc);
			const char *v = getenv(name);

			if (v)
				printf("env %s=%s\n", name, v);
			else
				printf("env %s unset\n", name);
		} else if (strcmp(cmd, "ns") == 0) {
			printf("ns user=%llu mnt=%llu net=%llu pid=%llu ipc=%llu uts=%llu\n",
			       ns_ino("user"), ns_ino("mnt"), ns_ino("net"), ns_ino("pid"),
			       ns_ino("ipc"), ns_ino("uts"));
		} else if (strcmp(cmd, "pid") == 0) {
			printf("pid %d\n", (int)getpid());
		} else if (strcmp(cmd, "ids") == 0) {
			printf("ids %u %u %u %u\n", (unsigned)getuid(), (unsigned)geteuid(),
			       (unsigned)getgid(), (unsigned)getegid());
		} else if (strcmp(cmd, "caps") == 0) {
			struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
			struct __user_cap_data_struct d[2] = { 0 };
			unsigned long long bnd = 0, amb = 0;

			syscall(SYS_capget, &hdr, d);
			for (int c = 0; c < 64; c++) {
				int b = prctl(PR_CAPBSET_READ, c, 0, 0, 0);

				if (b < 0)
					break;
				if (b)
					bnd |= 1ULL << c;
				if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) == 1)
					amb |= 1ULL << c;
			}
			printf("caps eff=%llx prm=%llx inh=%llx bnd=%llx amb=%llx\n",
			       (unsigned long long)d[1].effective << 32 | d[0].effective,
			       (unsigned long long)d[1].permitted << 32 | d[0].permitted,
			       (unsigned long long)d[1].inheritable << 32 | d[0].inheritable, bnd, amb);
		} else if (strcmp(cmd, "nnp") == 0) {
			printf("nnp %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
		} else if (strcmp(cmd, "rlimit") == 0) {
			const char *name = need_arg(argv, ++i, argc);
			int res = strcmp(name, "nofile") == 0 ? RLIMIT_NOFILE :
				  strcmp(name, "nproc") == 0 ? RLIMIT_NPROC :
				  strcmp(name, "core") == 0 ? RLIMIT_CORE : RLIMIT_FSIZE;
			struct rlimit rl;

			getrlimit(res, &rl);
			printf("rlimit %s %llu %llu\n", name, (unsigned long long)rl.rlim_cur,
			       (unsigned long long)rl.rlim_max);
		} else if (strcmp(cmd, "list-fds") == 0) {
			list_fds();
		} else if (strcmp(cmd, "ls") == 0) {
			const char *path = need_arg(argv, ++i, argc);
			DIR *dir = opendir(path);
			struct dirent *de;
			int n = 0;

			if (!dir) {
				printf("ls %s %s\n", path, errname(errno));
				continue;
			}
			while ((de = readdir(dir)))
				if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
					n++;
			closedir(dir);
			printf("ls %s %d\n", path, n);
		} else if (strcmp(cmd, "open") == 0) {
			const char *path = need_arg(argv, ++i, argc);
			const char *mode = need_arg(argv, ++i, argc);
			int fd = strcmp(mode, "w") == 0 ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)
							: open(path, O_RDONLY | O_CLOEXEC);

			if (fd < 0) {
				printf("open %s %s\n", path, errname(errno));
			} else {
				printf("open %s ok\n", path);
				close(fd);
			}
		} else if (strcmp(cmd, "exec") == 0) {
			const char *path = need_arg(argv, ++i, argc);

			fflush(stdout);
			execl(path, path, (char *)NULL);
			printf("exec %s\n", errname(errno));
		} else if (strcmp(cmd, "socket") == 0) {
			const char *family = need_arg(argv, ++i, argc);
			int fd = socket(strcmp(family, "inet") == 0 ? AF_INET : AF_UNIX,
					SOCK_STREAM | SOCK_CLOEXEC, 0);

			if (fd < 0) {
				printf("socket %s %s\n", family, errname(errno));
			} else {
				printf("socket %s ok\n", family);
				close(fd);
			}
		} else if (strcmp(cmd, "forbidden") == 0) {
			syscall(SYS_personality, 0xffffffffUL);
			printf("forbidden returned\n");
		} else if (strcmp(cmd, "thread") == 0) {
			pthread_t t;
			int r = pthread_create(&t, NULL, thread_main, NULL);

			if (r == 0)
				r = pthread_join(t, NULL);
			printf("thread %s\n", r ? errname(r) : "ok");
		} else if (strcmp(cmd, "race") == 0) {
			pthread_t t;

			if (pthread_create(&t, NULL, race_main, NULL) == 0) {
				racy++;
				pthread_join(t, NULL);
			}
			printf("race %d\n", racy);
		} else if (strcmp(cmd, "thread-live") == 0) {
			pthread_t t;
			int r = pthread_create(&t, NULL, thread_stay, NULL);

			printf("thread-live %s\n", r ? errname(r) : "ok");
		} else if (strcmp(cmd, "exit") == 0) {
			exit(atoi(need_arg(argv, ++i, argc)));
		} else {
			fprintf(stderr, "pal-sandbox-child: unknown command %s\n", cmd);
			return 122;
		}
	}
	pal_sandbox_unref(sandbox);
	return 0;
}
