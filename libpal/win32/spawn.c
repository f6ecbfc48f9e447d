/* SPDX-License-Identifier: MIT */
/*
 * Process spawning on Windows: CreateProcessW with an explicit handle list,
 * an MSVCRT-quoted command line, a sorted environment block, stdio and an
 * optional kill-on-close job.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <pal/pal.h>

#include "spawn-private.h"
#include "win32-private.h"

bool spawn_refuse_job_list;

typedef struct {
	char *key;
	char *value; /* NULL: unset */
} EnvOp;

struct PalSpawn {
	char *program;
	char *arg0;
	char **args;
	size_t n_args;
	EnvOp *env_ops;
	size_t n_env_ops;
	bool env_clear;
	PalStdio stdio_mode[3];
	HANDLE stdio_handle[3];
	HANDLE *inherit;
	size_t n_inherit;
	char *cwd;
	bool job;
	const char *failed_step;
};

struct PalChild {
	HANDLE process;
	DWORD pid;
	HANDLE job;
};

/* Serializes the inheritable window of listed handles between spawns. */
static SRWLOCK inherit_lock = SRWLOCK_INIT;

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

PAL_API PalSpawn *pal_spawn_new(const char *program)
{
	PalSpawn *spawn;

	if (!program || !*program)
		return NULL;
	spawn = calloc(1, sizeof(*spawn));
	if (!spawn)
		return NULL;
	spawn->program = dup_str(program);
	if (!spawn->program) {
		free(spawn);
		return NULL;
	}
	return spawn;
}

static void env_ops_clear(PalSpawn *spawn)
{
	for (size_t i = 0; i < spawn->n_env_ops; i++) {
		free(spawn->env_ops[i].key);
		free(spawn->env_ops[i].value);
	}
	free(spawn->env_ops);
	spawn->env_ops = NULL;
	spawn->n_env_ops = 0;
}

PAL_API PalSpawn *pal_spawn_free(PalSpawn *spawn)
{
	if (!spawn)
		return NULL;
	for (size_t i = 0; i < spawn->n_args; i++)
		free(spawn->args[i]);
	free(spawn->args);
	env_ops_clear(spawn);
	free(spawn->inherit);
	free(spawn->program);
	free(spawn->arg0);
	free(spawn->cwd);
	free(spawn);
	return NULL;
}

PAL_API int pal_spawn_set_arg0(PalSpawn *spawn, const char *arg0)
{
	char *copy;

	if (!spawn || !arg0 || strchr(arg0, '"'))
		return -(int)ERROR_INVALID_PARAMETER;
	copy = dup_str(arg0);
	if (!copy)
		return -(int)ERROR_NOT_ENOUGH_MEMORY;
	free(spawn->arg0);
	spawn->arg0 = copy;
	return 0;
}

PAL_API int pal_spawn_add_arg(PalSpawn *spawn, const char *arg)
{
	char **n;
	char *copy;

	if (!spawn || !arg)
		return -(int)ERROR_INVALID_PARAMETER;
	copy = dup_str(arg);
	n = copy ? realloc(spawn->args, (spawn->n_args + 1) * sizeof(char *)) : NULL;
	if (!n) {
		free(copy);
		return -(int)ERROR_NOT_ENOUGH_MEMORY;
	}
	spawn->args = n;
	spawn->args[spawn->n_args++] = copy;
	return 0;
}

PAL_API int pal_spawn_add_args(PalSpawn *spawn, const char *const *args)
{
	if (!spawn || !args)
		return -(int)ERROR_INVALID_PARAMETER;
	for (size_t i = 0; args[i]; i++) {
		int r = pal_spawn_add_arg(spawn, args[i]);

		if (r < 0)
			return r;
	}
	return 0;
}

static int env_add_op(PalSpawn *spawn, const char *key, const char *value)
{
	EnvOp *n;
	EnvOp op = { 0 };

	if (!spawn || !key || !*key || strchr(key, '='))
		return -(int)ERROR_INVALID_PARAMETER;
	op.key = dup_str(key);
	if (op.key && value)
		op.value = dup_str(value);
	n = op.key && (!value || op.value)
		    ? realloc(spawn->env_ops, (spawn->n_env_ops + 1) * sizeof(EnvOp))
		    : NULL;
	if (!n) {
		free(op.key);
		free(op.value);
		return -(int)ERROR_NOT_ENOUGH_MEMORY;
	}
	spawn->env_ops = n;
	spawn->env_ops[spawn->n_env_ops++] = op;
	return 0;
}

PAL_API int pal_spawn_env_set(PalSpawn *spawn, const char *key, const char *value)
{
	if (!value)
		return -(int)ERROR_INVALID_PARAMETER;
	return env_add_op(spawn, key, value);
}

PAL_API int pal_spawn_env_unset(PalSpawn *spawn, const char *key)
{
	return env_add_op(spawn, key, NULL);
}

PAL_API int pal_spawn_env_clear(PalSpawn *spawn)
{
	if (!spawn)
		return -(int)ERROR_INVALID_PARAMETER;
	env_ops_clear(spawn);
	spawn->env_clear = true;
	return 0;
}

static int set_stdio(PalSpawn *spawn, int which, PalStdio mode, HANDLE handle)
{
	if (!spawn)
		return -(int)ERROR_INVALID_PARAMETER;
	switch (mode) {
	case PAL_STDIO_INHERIT:
	case PAL_STDIO_NULL:
		handle = NULL;
		break;
	case PAL_STDIO_HANDLE:
		if (!handle || handle == INVALID_HANDLE_VALUE)
			return -(int)ERROR_INVALID_PARAMETER;
		break;
	default:
		return -(int)ERROR_INVALID_PARAMETER;
	}
	spawn->stdio_mode[which] = mode;
	spawn->stdio_handle[which] = handle;
	return 0;
}

PAL_API int pal_spawn_set_stdin(PalSpawn *spawn, PalStdio mode, HANDLE handle)
{
	return set_stdio(spawn, 0, mode, handle);
}

PAL_API int pal_spawn_set_stdout(PalSpawn *spawn, PalStdio mode, HANDLE handle)
{
	return set_stdio(spawn, 1, mode, handle);
}

PAL_API int pal_spawn_set_stderr(PalSpawn *spawn, PalStdio mode, HANDLE handle)
{
	return set_stdio(spawn, 2, mode, handle);
}

PAL_API int pal_spawn_inherit_handle(PalSpawn *spawn, HANDLE handle)
{
	HANDLE *n;

	if (!spawn)
		return -(int)ERROR_INVALID_PARAMETER;
	if (!handle || handle == INVALID_HANDLE_VALUE)
		return -(int)ERROR_INVALID_HANDLE;
	for (size_t i = 0; i < spawn->n_inherit; i++)
		if (spawn->inherit[i] == handle)
			return 0;
	n = realloc(spawn->inherit, (spawn->n_inherit + 1) * sizeof(HANDLE));
	if (!n)
		return -(int)ERROR_NOT_ENOUGH_MEMORY;
	spawn->inherit = n;
	spawn->inherit[spawn->n_inherit++] = handle;
	return 0;
}

PAL_API int pal_spawn_set_cwd(PalSpawn *spawn, const char *dir)
{
	char *copy = NULL;

	if (!spawn)
		return -(int)ERROR_INVALID_PARAMETER;
	if (dir && !(copy = dup_str(dir)))
		return -(int)ERROR_NOT_ENOUGH_MEMORY;
	free(spawn->cwd);
	spawn->cwd = copy;
	return 0;
}

PAL_API int pal_spawn_set_job(PalSpawn *spawn, bool job)
{
	if (!spawn)
		return -(int)ERROR_INVALID_PARAMETER;
	spawn->job = job;
	return 0;
}

PAL_API const char *pal_spawn_get_failed_step(const PalSpawn *spawn)
{
	return spawn ? spawn->failed_step : NULL;
}

/* A growable UTF-16 string. */
typedef struct {
	wchar_t *data;
	size_t len;
	size_t cap;
	bool oom;
} WBuf;

static void wbuf_reserve(WBuf *b, size_t extra)
{
	wchar_t *n;
	size_t cap;

	if (b->oom || b->len + extra + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	n = realloc(b->data, cap * sizeof(wchar_t));
	if (!n) {
		b->oom = true;
		return;
	}
	b->data = n;
	b->cap = cap;
}

static void wbuf_put(WBuf *b, wchar_t c, size_t count)
{
	wbuf_reserve(b, count);
	if (b->oom)
		return;
	while (count--)
		b->data[b->len++] = c;
	b->data[b->len] = 0;
}

static void wbuf_append(WBuf *b, const wchar_t *s, size_t n)
{
	wbuf_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->data + b->len, s, n * sizeof(wchar_t));
	b->len += n;
	b->data[b->len] = 0;
}

/* UTF-8 to a malloc'ed UTF-16 string; NULL with the last error set. */
static wchar_t *to_wide(const char *s)
{
	int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
	wchar_t *w;

	if (n <= 0)
		return NULL;
	w = malloc((size_t)n * sizeof(wchar_t));
	if (!w) {
		SetLastError(ERROR_NOT_ENOUGH_MEMORY);
		return NULL;
	}
	if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
		free(w);
		return NULL;
	}
	return w;
}

/*
 * One argument by the MSVCRT rules: quoted when empty or holding white
 * space or a quote; inside quotes, backslashes are literal except before a
 * quote (2n backslashes + '"' read as n backslashes and the end of the
 * quote; 2n + 1 as n backslashes and a literal quote).
 */
static void quote_arg(WBuf *b, const wchar_t *arg)
{
	if (*arg && !wcspbrk(arg, L" \t\n\v\"")) {
		wbuf_append(b, arg, wcslen(arg));
		return;
	}
	wbuf_put(b, L'"', 1);
	for (const wchar_t *p = arg;; p++) {
		size_t backslashes = 0;

		while (*p == L'\\') {
			p++;
			backslashes++;
		}
		if (!*p) {
			wbuf_put(b, L'\\', backslashes * 2);
			break;
		}
		if (*p == L'"') {
			wbuf_put(b, L'\\', backslashes * 2 + 1);
			wbuf_put(b, L'"', 1);
		} else {
			wbuf_put(b, L'\\', backslashes);
			wbuf_put(b, *p, 1);
		}
	}
	wbuf_put(b, L'"', 1);
}

/* The command line: argv[0] verbatim (quoted if needed), then the arguments. */
static int build_command_line(const PalSpawn *spawn, WBuf *b, const char **step)
{
	const char *arg0 = spawn->arg0 ? spawn->arg0 : spawn->program;
	wchar_t *w;

	*step = "arg0";
	if (strchr(arg0, '"'))
		return -(int)ERROR_INVALID_PARAMETER;
	*step = "utf8";
	w = to_wide(arg0);
	if (!w)
		return win_error();
	if (!*w || wcspbrk(w, L" \t")) {
		wbuf_put(b, L'"', 1);
		wbuf_append(b, w, wcslen(w));
		wbuf_put(b, L'"', 1);
	} else {
		wbuf_append(b, w, wcslen(w));
	}
	free(w);
	for (size_t i = 0; i < spawn->n_args; i++) {
		w = to_wide(spawn->args[i]);
		if (!w)
			return win_error();
		wbuf_put(b, L' ', 1);
		quote_arg(b, w);
		free(w);
	}
	*step = "command_line";
	return b->oom ? -(int)ERROR_NOT_ENOUGH_MEMORY : 0;
}

/* Length of the name of an environment entry "NAME=VALUE" ("=C:=..." too). */
static size_t env_name_len(const wchar_t *entry)
{
	const wchar_t *eq = wcschr(entry + 1, L'=');

	return eq ? (size_t)(eq - entry) : wcslen(entry);
}

static int env_name_cmp(const wchar_t *a, size_t alen, const wchar_t *b, size_t blen)
{
	int r = CompareStringOrdinal(a, (int)alen, b, (int)blen, TRUE);

	return r - CSTR_EQUAL;
}

static int env_entry_cmp(const void *pa, const void *pb)
{
	const wchar_t *a = *(wchar_t *const *)pa, *b = *(wchar_t *const *)pb;

	return env_name_cmp(a, env_name_len(a), b, env_name_len(b));
}

typedef struct {
	wchar_t **entries;
	size_t n;
} EnvList;

static void env_list_clear(EnvList *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->entries[i]);
	free(l->entries);
	l->entries = NULL;
	l->n = 0;
}

static void env_list_remove(EnvList *l, const wchar_t *key)
{
	size_t klen = wcslen(key), j = 0;

	for (size_t i = 0; i < l->n; i++) {
		if (env_name_cmp(l->entries[i], env_name_len(l->entries[i]), key, klen) == 0)
			free(l->entries[i]);
		else
			l->entries[j++] = l->entries[i];
	}
	l->n = j;
}

/* Appends a copy of @entry (or of "key=value"), taking nothing. */
static int env_list_add(EnvList *l, const wchar_t *entry)
{
	size_t n = wcslen(entry) + 1;
	wchar_t **grown = realloc(l->entries, (l->n + 1) * sizeof(wchar_t *));
	wchar_t *copy;

	if (!grown)
		return -(int)ERROR_NOT_ENOUGH_MEMORY;
	l->entries = grown;
	copy = malloc(n * sizeof(wchar_t));
	if (!copy)
		return -(int)ERROR_NOT_ENOUGH_MEMORY;
	memcpy(copy, entry, n * sizeof(wchar_t));
	l->entries[l->n++] = copy;
	return 0;
}

static int build_env_block(const PalSpawn *spawn, WBuf *b, const char **step)
{
	EnvList list = { 0 };
	int r = 0;

	if (!spawn->env_clear) {
		wchar_t *parent = GetEnvironmentStringsW();

		*step = "GetEnvironmentStringsW";
		if (!parent)
			return win_error();
		for (const wchar_t *p = parent; *p && r == 0; p += wcslen(p) + 1)
			r = env_list_add(&list, p);
		FreeEnvironmentStringsW(parent);
	}
	for (size_t i = 0; i < spawn->n_env_ops && r == 0; i++) {
		const EnvOp *op = &spawn->env_ops[i];
		wchar_t *key, *value = NULL;
		WBuf entry = { 0 };

		*step = "utf8";
		key = to_wide(op->key);
		if (key && op->value)
			value = to_wide(op->value);
		if (!key || (op->value && !value)) {
			r = win_error();
		} else {
			env_list_remove(&list, key);
			if (op->value) {
				wbuf_append(&entry, key, wcslen(key));
				wbuf_put(&entry, L'=', 1);
				wbuf_append(&entry, value, wcslen(value));
				r = entry.oom ? -(int)ERROR_NOT_ENOUGH_MEMORY
					      : env_list_add(&list, entry.data);
			}
		}
		free(entry.data);
		free(key);
		free(value);
	}
	if (r == 0) {
		*step = "environment";
		if (list.n > 1)
			qsort(list.entries, list.n, sizeof(wchar_t *), env_entry_cmp);
		for (size_t i = 0; i < list.n; i++) {
			wbuf_append(b, list.entries[i], wcslen(list.entries[i]));
			wbuf_put(b, 0, 1);
		}
		/* The terminating empty entry; an empty block is two NULs. */
		wbuf_put(b, 0, list.n ? 1 : 2);
		if (b->oom)
			r = -(int)ERROR_NOT_ENOUGH_MEMORY;
	}
	env_list_clear(&list);
	return r;
}

static int resolve_program(const PalSpawn *spawn, wchar_t **ret_path, const char **step)
{
	wchar_t *w, *found;
	DWORD n, m;

	*step = "utf8";
	w = to_wide(spawn->program);
	if (!w)
		return win_error();
	if (wcspbrk(w, L"/\\")) {
		*ret_path = w;
		return 0;
	}
	*step = "SearchPathW";
	n = SearchPathW(NULL, w, L".exe", 0, NULL, NULL);
	if (n == 0) {
		int r = win_error();

		free(w);
		return r;
	}
	found = malloc((size_t)n * sizeof(wchar_t));
	if (!found) {
		free(w);
		return -(int)ERROR_NOT_ENOUGH_MEMORY;
	}
	m = SearchPathW(NULL, w, L".exe", n, found, NULL);
	free(w);
	if (m == 0 || m >= n) {
		int r = m == 0 ? win_error() : -(int)ERROR_FILE_NOT_FOUND;

		free(found);
		return r;
	}
	*ret_path = found;
	return 0;
}

static int create_job(HANDLE *ret_job, const char **step)
{
	JOBOBJECT_EXTENDED_LIMIT_INFORMATION info = { 0 };
	HANDLE job;

	*step = "CreateJobObjectW";
	job = CreateJobObjectW(NULL, NULL);
	if (!job)
		return win_error();
	info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
	*step = "SetInformationJobObject";
	if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info, sizeof(info))) {
		int r = win_error();

		CloseHandle(job);
		return r;
	}
	*ret_job = job;
	return 0;
}

/* Adds @h to @list unless it is already there. */
static void list_add_unique(HANDLE *list, size_t *n, HANDLE h)
{
	for (size_t i = 0; i < *n; i++)
		if (list[i] == h)
			return;
	list[(*n)++] = h;
}

PAL_API int pal_spawn_run(PalSpawn *spawn, PalChild **ret_child)
{
	static const DWORD std_ids[3] = { STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE };
	STARTUPINFOEXW si = { 0 };
	PROCESS_INFORMATION pi = { 0 };
	WBuf cmdline = { 0 }, env = { 0 };
	wchar_t *app = NULL, *cwd = NULL;
	HANDLE nul = NULL, job = NULL, stdio[3];
	HANDLE *list = NULL;
	bool *made_inheritable = NULL;
	size_t n_list = 0;
	SIZE_T attr_size = 0;
	DWORD flags = CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT;
	bool job_by_attribute = false, created = false, locked = false;
	const char *step = "arguments";
	PalChild *child = NULL;
	int r;

	if (!spawn || !ret_child)
		return -(int)ERROR_INVALID_PARAMETER;
	spawn->failed_step = NULL;

	r = resolve_program(spawn, &app, &step);
	if (r < 0)
		goto out;
	r = build_command_line(spawn, &cmdline, &step);
	if (r < 0)
		goto out;
	r = build_env_block(spawn, &env, &step);
	if (r < 0)
		goto out;
	if (spawn->cwd) {
		step = "utf8";
		cwd = to_wide(spawn->cwd);
		if (!cwd) {
			r = win_error();
			goto out;
		}
	}

	step = "arguments";
	child = calloc(1, sizeof(*child));
	list = calloc(spawn->n_inherit + 3, sizeof(HANDLE));
	made_inheritable = calloc(spawn->n_inherit + 3, sizeof(bool));
	if (!child || !list || !made_inheritable) {
		r = -(int)ERROR_NOT_ENOUGH_MEMORY;
		goto out;
	}

	/* Stdio: every stream is set, so STARTF_USESTDHANDLES. */
	for (int i = 0; i < 3; i++) {
		DWORD hflags;

		switch (spawn->stdio_mode[i]) {
		case PAL_STDIO_NULL:
			if (!nul) {
				step = "CreateFileW";
				nul = CreateFileW(L"NUL", GENERIC_READ | GENERIC_WRITE,
						  FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
						  0, NULL);
				if (nul == INVALID_HANDLE_VALUE) {
					nul = NULL;
					r = win_error();
					goto out;
				}
			}
			stdio[i] = nul;
			break;
		case PAL_STDIO_HANDLE:
			stdio[i] = spawn->stdio_handle[i];
			break;
		default:
			stdio[i] = GetStdHandle(std_ids[i]);
			if (stdio[i] == INVALID_HANDLE_VALUE)
				stdio[i] = NULL;
			/* A pre-Windows 8 console pseudo-handle cannot be listed. */
			if (stdio[i] && !GetHandleInformation(stdio[i], &hflags)) {
				continue;
			}
			break;
		}
		if (stdio[i])
			list_add_unique(list, &n_list, stdio[i]);
	}
	si.StartupInfo.cb = sizeof(si);
	si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
	si.StartupInfo.hStdInput = stdio[0];
	si.StartupInfo.hStdOutput = stdio[1];
	si.StartupInfo.hStdError = stdio[2];
	for (size_t i = 0; i < spawn->n_inherit; i++)
		list_add_unique(list, &n_list, spawn->inherit[i]);

	if (spawn->job) {
		r = create_job(&job, &step);
		if (r < 0)
			goto out;
	}

	step = "InitializeProcThreadAttributeList";
	InitializeProcThreadAttributeList(NULL, 2, 0, &attr_size);
	si.lpAttributeList = malloc(attr_size);
	if (!si.lpAttributeList) {
		r = -(int)ERROR_NOT_ENOUGH_MEMORY;
		goto out;
	}
	if (!InitializeProcThreadAttributeList(si.lpAttributeList, 2, 0, &attr_size)) {
		free(si.lpAttributeList);
		si.lpAttributeList = NULL;
		r = win_error();
		goto out;
	}
	step = "UpdateProcThreadAttribute";
	if (n_list && !UpdateProcThreadAttribute(si.lpAttributeList, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
						 list, n_list * sizeof(HANDLE), NULL, NULL)) {
		r = win_error();
		goto out;
	}
	if (job) {
		if (!spawn_refuse_job_list &&
		    UpdateProcThreadAttribute(si.lpAttributeList, 0, PROC_THREAD_ATTRIBUTE_JOB_LIST, &job,
					      sizeof(HANDLE), NULL, NULL))
			job_by_attribute = true;
		else
			flags |= CREATE_SUSPENDED;
	}

	/*
	 * The handle list only narrows what bInheritHandles passes on: every
	 * listed handle must be inheritable for the call. Those that are not
	 * become so until CreateProcessW returns, under a lock so that two
	 * spawns listing one handle do not restore it under each other.
	 */
	AcquireSRWLockExclusive(&inherit_lock);
	locked = true;
	for (size_t i = 0; i < n_list; i++) {
		DWORD hflags;

		step = "GetHandleInformation";
		if (!GetHandleInformation(list[i], &hflags)) {
			r = win_error();
			goto out;
		}
		if (!(hflags & HANDLE_FLAG_INHERIT)) {
			step = "SetHandleInformation";
			if (!SetHandleInformation(list[i], HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT)) {
				r = win_error();
				goto out;
			}
			made_inheritable[i] = true;
		}
	}

	step = "CreateProcessW";
	created = CreateProcessW(app, cmdline.data, NULL, NULL, n_list > 0, flags, env.data, cwd,
				 &si.StartupInfo, &pi);
	if (!created) {
		r = win_error();
		goto out;
	}

	if (job && !job_by_attribute) {
		step = "AssignProcessToJobObject";
		if (!AssignProcessToJobObject(job, pi.hProcess)) {
			r = win_error();
			goto out;
		}
		step = "ResumeThread";
		if (ResumeThread(pi.hThread) == (DWORD)-1) {
			r = win_error();
			goto out;
		}
	}

	child->process = pi.hProcess;
	child->pid = pi.dwProcessId;
	child->job = job;
	pi.hProcess = NULL;
	job = NULL;
	*ret_child = child;
	child = NULL;
	r = 0;

out:
	if (locked) {
		for (size_t i = 0; i < n_list; i++)
			if (made_inheritable[i])
				SetHandleInformation(list[i], HANDLE_FLAG_INHERIT, 0);
		ReleaseSRWLockExclusive(&inherit_lock);
	}
	if (r < 0) {
		spawn->failed_step = step;
		if (pi.hProcess) {
			/* Started suspended and not placed in its job: it never ran. */
			TerminateProcess(pi.hProcess, 127);
		}
	}
	pal_handle_close(pi.hProcess);
	pal_handle_close(pi.hThread);
	if (si.lpAttributeList) {
		DeleteProcThreadAttributeList(si.lpAttributeList);
		free(si.lpAttributeList);
	}
	pal_handle_close(job);
	pal_handle_close(nul);
	free(made_inheritable);
	free(list);
	free(child);
	free(cwd);
	free(app);
	free(env.data);
	free(cmdline.data);
	return r;
}

PAL_API DWORD pal_child_get_pid(const PalChild *child)
{
	return child ? child->pid : 0;
}

PAL_API HANDLE pal_child_get_process_handle(const PalChild *child)
{
	return child ? child->process : NULL;
}

PAL_API HANDLE pal_child_get_job(const PalChild *child)
{
	return child ? child->job : NULL;
}

static int child_wait(PalChild *child, DWORD timeout, DWORD *ret_exit_code)
{
	DWORD code;

	if (!child)
		return -(int)ERROR_INVALID_PARAMETER;
	switch (WaitForSingleObject(child->process, timeout)) {
	case WAIT_OBJECT_0:
		break;
	case WAIT_TIMEOUT:
		return -(int)WAIT_TIMEOUT;
	default:
		return win_error();
	}
	if (!GetExitCodeProcess(child->process, &code))
		return win_error();
	if (ret_exit_code)
		*ret_exit_code = code;
	return 0;
}

PAL_API int pal_child_wait(PalChild *child, DWORD *ret_exit_code)
{
	return child_wait(child, INFINITE, ret_exit_code);
}

PAL_API int pal_child_try_wait(PalChild *child, DWORD *ret_exit_code)
{
	return child_wait(child, 0, ret_exit_code);
}

PAL_API int pal_child_kill(PalChild *child, UINT exit_code)
{
	BOOL ok;

	if (!child)
		return -(int)ERROR_INVALID_PARAMETER;
	ok = child->job ? TerminateJobObject(child->job, exit_code)
			: TerminateProcess(child->process, exit_code);
	if (!ok) {
		int r = win_error();

		/* TerminateProcess() of an exited process is access denied. */
		if (WaitForSingleObject(child->process, 0) == WAIT_OBJECT_0)
			return 0;
		return r;
	}
	return 0;
}

PAL_API PalChild *pal_child_free(PalChild *child)
{
	if (!child)
		return NULL;
	pal_handle_close(child->job);
	pal_handle_close(child->process);
	free(child);
	return NULL;
}
