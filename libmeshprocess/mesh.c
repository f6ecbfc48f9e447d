/* SPDX-License-Identifier: MIT */
/*
 * The coordinator (upstream mesh_process, reference 5.1-5.5): launching
 * hosts, watching them, crash, inspect, listen/connect and shutdown.
 *
 * Everything the coordinator owns is touched on its context (its own thread
 * by default) or under mesh->lock; public calls from other threads hand work
 * to the context and wait.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config-private.h"
#include "startup-private.h"


/*
 * Spare hosts of one configuration (mesh_prestart_hosts()): @config is a
 * snapshot, and a spare is handed out only to a launch with an equal one.
 */
typedef struct {
	MeshProcessConfig *config;
	guint want;
	/*
	 * Spares in a row that died while they waited (ready or not) or could
	 * not be spawned; a hand-out or mesh_prestart_hosts() resets it.
	 */
	guint failures;
} SparePool;

/*
 * After this many spares in a row died before their hand-out, a pool stops
 * refilling: a spare that dies after it was ready (a crash while it waits,
 * a killer) would otherwise cost a spawn every SPARE_REFILL_DELAY_MS.
 */
#define SPARE_MAX_FAILURES 3

typedef struct {
	Mesh *mesh;
	char *name;
	GPid pid;
	MeshNodeId node_id;
	PalChild *child;
	MeshSender *requests; /* HostRequest; NULL once shutting down */
	MeshReceiver *events; /* HostEvent: "joined" (NULL: none asked for) */
	gboolean c_host;      /* it said it joined: a C host (under mesh->lock) */
	MeshOneshotReceiver *probe; /* an upstream host's first inspect (on the context) */
	GSource *watch;
	MeshHostState state; /* under mesh->lock */
	gboolean killed;     /* by the mesh (shutdown deadline, mesh_free) */
	gboolean sandboxed;  /* launched with a sandbox profile */
	ExitHandler *on_exit;
	MeshHostExit exit; /* once reaped; its description is owned */
	/* A remote host: its link, the command, and once the command exited: */
	MeshP2pLink *link;
	char *remote;
	char *exit_text; /* how it ended, while the link drains */
	GSource *drain;  /* removes the host when the link ends, or at its deadline */
	/* A spare (mesh_prestart_hosts()) until handed out; under mesh->lock: */
	gboolean spare;
	SparePool *pool;           /* its pool; NULL once the pool was removed */
	MeshSender *spare_boot;    /* the bootstrap channel, for the hand-out */
	MeshOneshotReceiver *spare_ready; /* the answer to its hello (on the context) */
	MeshSender *spare_requests; /* its request channel (in the hello); h->requests once handed out */
	gboolean ready;            /* it answered: joined and waiting */
} Host;

typedef struct {
	char *path;
	MeshUnixListener *listener;
	MeshSender *sender; /* into the receiver handed to the caller */
} Listening;

struct Mesh {
	char *name;
	MeshNode *node;
	MeshUnixNode *unode;
	GMainContext *context;
	GMainLoop *loop;
	GThread *thread;
	/*
	 * On a caller's context, hosts are spawned on this thread, made by the
	 * first launch (the parent-death signal follows the spawning thread).
	 */
	GThread *spawner;
	GAsyncQueue *spawn_jobs; /* Sync * */
	long creator; /* the thread that made the mesh (its tid) */
	/*
	 * Held, before lock, while a host's request sender is cloned (a send,
	 * which waits while a remote host's link is full): whoever takes a
	 * request sender away takes it too, so the clone needs no lock more.
	 */
	GMutex requests_lock;
	GMutex lock;
	GCond cond;
	GHashTable *hosts;     /* GPid -> Host * (spares included) */
	GPtrArray *pools;      /* SparePool * */
	guint n_spares;        /* hosts in the table that are spares */
	GSource *refill;       /* an idle that starts missing spares, or NULL */
	GHashTable *listening; /* path -> Listening * */
	char *argv0;
	gboolean shut_down;
	/* mesh_shutdown_async()'s thread; hurry: mesh_free() wants it to end */
	GThread *shutdown_thread;
	gboolean shutdown_done, hurry;
	gboolean freeing;  /* mesh_free() began: no more callbacks */
	GPtrArray *pending; /* GSource * of callbacks not run yet (Pending) */
	/*
	 * The last hosts that exited, for describe_peer(): a connection can
	 * end after its host was reaped (then its ports must still name it).
	 */
	struct {
		MeshNodeId node_id;
		char *text;
		GPid pid;
		MeshHostState state;
	} gone[16];
	guint gone_next;
};

/*
 * A snapshot of @c for a spare pool: everything a spawn uses (not the exit
 * callback), the sandbox profile as a copy: the caller may change its own
 * profile object afterwards, and a spare must stay isolated as it asked then.
 */
static MeshProcessConfig *config_copy(const MeshProcessConfig *c)
{
	MeshProcessConfig *n = mesh_process_config_new(c->name);
	n->program = g_strdup(c->program);
	for (guint i = 0; i < c->args->len; i++)
		g_ptr_array_add(n->args, g_strdup(c->args->pdata[i]));
	n->skip_worker_arg = c->skip_worker_arg;
	for (guint i = 0; i < c->env->len; i++)
		g_ptr_array_add(n->env, g_strdup(c->env->pdata[i]));
	n->stderr_path = g_strdup(c->stderr_path);
	if (c->sandbox) {
		n->sandbox = pal_sandbox_copy(c->sandbox);
		if (!n->sandbox)
			g_error("mesh: copying a sandbox profile: %s", g_strerror(errno));
	}
	n->spawn_hook = c->spawn_hook;
	n->spawn_hook_data = c->spawn_hook_data;
	return n;
}

static gboolean strv_equal(GPtrArray *a, GPtrArray *b)
{
	if (a->len != b->len)
		return FALSE;
	for (guint i = 0; i < a->len; i++)
		if (strcmp(a->pdata[i], b->pdata[i]) != 0)
			return FALSE;
	return TRUE;
}

/*
 * Would @a spawn the same process as @b: same name, program, arguments,
 * environment, stderr, sandbox profile (equal steps: pal_sandbox_equal())
 * and spawn hook.
 */
static gboolean config_spawns_same(const MeshProcessConfig *a, const MeshProcessConfig *b)
{
	return strcmp(a->name, b->name) == 0 && g_strcmp0(a->program, b->program) == 0 &&
	       strv_equal(a->args, b->args) && a->skip_worker_arg == b->skip_worker_arg &&
	       strv_equal(a->env, b->env) && g_strcmp0(a->stderr_path, b->stderr_path) == 0 &&
	       pal_sandbox_equal(a->sandbox, b->sandbox) && a->spawn_hook == b->spawn_hook &&
	       a->spawn_hook_data == b->spawn_hook_data && !a->remote && !b->remote;
}

static void spare_pool_free(SparePool *p)
{
	mesh_process_config_free(p->config);
	g_free(p);
}

/* Running things on the coordinator's context. */

typedef struct {
	GSourceFunc func;
	gpointer data;
	GMutex lock;
	GCond cond;
	gboolean done;
} Sync;

static gboolean sync_cb(gpointer data)
{
	Sync *s = data;
	s->func(s->data);
	g_mutex_lock(&s->lock);
	s->done = TRUE;
	g_cond_signal(&s->cond);
	g_mutex_unlock(&s->lock);
	return G_SOURCE_REMOVE;
}

static void run_sync(Mesh *m, GSourceFunc func, gpointer data)
{
	/*
	 * On the coordinator's own thread when it has one; with a caller's
	 * context, on the calling thread (state is shared under m->lock).
	 */
	if (!m->thread || g_thread_self() == m->thread) {
		func(data);
		return;
	}
	Sync s = {.func = func, .data = data};
	g_mutex_init(&s.lock);
	g_cond_init(&s.cond);
	g_main_context_invoke(m->context, sync_cb, &s);
	g_mutex_lock(&s.lock);
	while (!s.done)
		g_cond_wait(&s.cond, &s.lock);
	g_mutex_unlock(&s.lock);
	g_mutex_clear(&s.lock);
	g_cond_clear(&s.cond);
}

/* Ends the spawner thread. */
static char spawner_quit;

static gpointer spawner_thread(gpointer data)
{
	GAsyncQueue *jobs = data;
	gpointer job;

	while ((job = g_async_queue_pop(jobs)) != &spawner_quit)
		sync_cb(job);
	return NULL;
}

/*
 * Runs @func(@data) on a thread that lives as long as @m and waits for it:
 * the coordinator's thread, or on a caller's context the spawner thread.
 */
static void run_on_long_lived_thread(Mesh *m, GSourceFunc func, gpointer data)
{
	if (m->thread) {
		run_sync(m, func, data);
		return;
	}
	g_mutex_lock(&m->lock);
	if (!m->spawner) {
		m->spawn_jobs = g_async_queue_new();
		m->spawner = g_thread_new("mesh-spawner", spawner_thread, m->spawn_jobs);
	}
	g_mutex_unlock(&m->lock);

	Sync s = {.func = func, .data = data};
	g_mutex_init(&s.lock);
	g_cond_init(&s.cond);
	g_async_queue_push(m->spawn_jobs, &s);
	g_mutex_lock(&s.lock);
	while (!s.done)
		g_cond_wait(&s.cond, &s.lock);
	g_mutex_unlock(&s.lock);
	g_mutex_clear(&s.lock);
	g_cond_clear(&s.cond);
}

static gpointer coordinator_thread(gpointer data)
{
	Mesh *m = data;
	g_main_context_push_thread_default(m->context);
	g_main_loop_run(m->loop);
	g_main_context_pop_thread_default(m->context);
	return NULL;
}

static char *read_argv0(void)
{
	char *cmdline = NULL;
	gsize len = 0;
	if (g_file_get_contents("/proc/self/cmdline", &cmdline, &len, NULL) && len > 0) {
		char *argv0 = g_strdup(cmdline);
		g_free(cmdline);
		return argv0;
	}
	g_free(cmdline);
	return g_strdup("mesh-host");
}

static void host_free(Host *h)
{
	if (h->watch) {
		g_source_destroy(h->watch);
		g_source_unref(h->watch);
	}
	mesh_receiver_free(h->events);
	mesh_oneshot_receiver_free(h->probe);
	exit_handler_unref(h->on_exit);
	if (h->drain) {
		g_source_destroy(h->drain);
		g_source_unref(h->drain);
	}
	/* A clone of it may be under way (host_requests()): it ends first. */
	g_mutex_lock(&h->mesh->requests_lock);
	MeshSender *requests = g_steal_pointer(&h->requests);
	g_mutex_unlock(&h->mesh->requests_lock);
	mesh_sender_free(requests);
	mesh_sender_free(h->spare_boot);
	mesh_oneshot_receiver_free(h->spare_ready);
	mesh_sender_free(h->spare_requests);
	mesh_p2p_link_free(h->link);
	pal_child_free(h->child);
	g_free(h->remote);
	g_free(h->exit_text);
	g_free((char *)h->exit.description);
	g_free(h->name);
	g_free(h);
}

static char *describe_status(int status, gboolean sandboxed);
static void spares_refill_locked(Mesh *m);

/* Callbacks to the caller: host exits, the end of mesh_shutdown_async(). */

typedef struct {
	Mesh *mesh;
	GSource *source; /* m->pending holds the reference */
	/* A host's exit. */
	ExitHandler *on_exit;
	char *name;
	GPid pid;
	MeshHostExit exit;
	/* The end of mesh_shutdown_async(). */
	MeshShutdownFunc done;
	gpointer data;
	GDestroyNotify notify;
	gboolean clean;
	GError *error;
} Pending;

static void pending_free(gpointer data)
{
	Pending *p = data;
	exit_handler_unref(p->on_exit);
	g_free(p->name);
	g_free((char *)p->exit.description);
	if (p->notify)
		p->notify(p->data);
	g_clear_error(&p->error);
	g_free(p);
}

static gboolean pending_dispatch(gpointer data)
{
	Pending *p = data;
	Mesh *m = p->mesh;

	/* Not once mesh_free() began; a callback may free the mesh. */
	g_mutex_lock(&m->lock);
	gboolean run = !m->freeing && g_ptr_array_remove_fast(m->pending, p->source);
	g_mutex_unlock(&m->lock);
	if (!run)
		return G_SOURCE_REMOVE;
	if (p->on_exit)
		p->on_exit->func(m, p->name, p->pid, &p->exit, p->on_exit->data);
	else if (p->done)
		p->done(m, p->clean, p->error, p->data);
	return G_SOURCE_REMOVE;
}

/* Runs @p's callback from an idle source of @context, with no lock held. Under m->lock. */
static void post_locked(Mesh *m, GMainContext *context, Pending *p)
{
	GSource *source = g_idle_source_new();

	p->mesh = m;
	p->source = source;
	g_source_set_priority(source, G_PRIORITY_DEFAULT);
	g_source_set_name(source, "MeshCallback");
	g_source_set_callback(source, pending_dispatch, p, pending_free);
	g_ptr_array_add(m->pending, source);
	g_source_attach(source, context);
}

/* mesh_free(): callbacks not run yet never run (their user data is freed). */
static void drop_pending(Mesh *m)
{
	g_mutex_lock(&m->lock);
	GPtrArray *pending = m->pending;
	m->pending = g_ptr_array_new_with_free_func((GDestroyNotify)g_source_unref);
	g_mutex_unlock(&m->lock);
	for (guint i = 0; i < pending->len; i++)
		g_source_destroy(pending->pdata[i]);
	g_ptr_array_free(pending, TRUE);
}

/* The host whose link is @link, or (@link NULL) whose node is @peer. Under m->lock. */
static Host *find_host_locked(Mesh *m, const MeshNodeId *peer, MeshP2pLink *link)
{
	GHashTableIter it;
	gpointer value;
	g_hash_table_iter_init(&it, m->hosts);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		Host *h = value;
		if (link ? h->link == link : mesh_uuid_equal(&h->node_id, peer))
			return h;
	}
	return NULL;
}

/*
 * Names a host whose connection ended, with how it ended when that is
 * already known (the kernel closes the sockets just before the process
 * becomes a zombie, so give it a moment).
 */
static char *describe_peer(const MeshNodeId *peer, gpointer data)
{
	Mesh *m = data;
	char *name = NULL, *how = NULL;
	GPid pid = 0;
	int pidfd = -1;
	gboolean sandboxed = FALSE;

	g_mutex_lock(&m->lock);
	Host *h = find_host_locked(m, peer, NULL);
	if (h) {
		name = g_strdup(h->name);
		pid = h->pid;
		sandboxed = h->sandboxed;
		pidfd = fcntl(pal_child_get_pidfd(h->child), F_DUPFD_CLOEXEC, 3);
	}
	for (guint i = 0; !name && i < G_N_ELEMENTS(m->gone); i++) {
		if (m->gone[i].text && memcmp(&m->gone[i].node_id, peer, sizeof(*peer)) == 0) {
			char *text = g_strdup(m->gone[i].text);
			g_mutex_unlock(&m->lock);
			return text;
		}
	}
	g_mutex_unlock(&m->lock);
	if (!name)
		return NULL;
	if (pidfd >= 0) {
		struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
		siginfo_t info = {0};
		if (poll(&pfd, 1, 100) == 1 &&
		    waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    info.si_pid != 0) {
			int status = info.si_code == CLD_EXITED ? W_EXITCODE(info.si_status, 0)
								 : info.si_status;
			how = describe_status(status, sandboxed);
		}
		close(pidfd);
	}
	char *out = how ? g_strdup_printf("host %s (pid %d) %s", name, (int)pid, how)
			: g_strdup_printf("host %s (pid %d)", name, (int)pid);
	g_free(how);
	g_free(name);
	return out;
}

/*
 * Names a remote host whose link ended (its describer): records the node id
 * its hello gave, for describe_peer() and inspect.
 */
static char *describe_remote(MeshP2pLink *link, const MeshNodeId *peer, gpointer data)
{
	Mesh *m = data;
	char *text = NULL;

	g_mutex_lock(&m->lock);
	Host *h = find_host_locked(m, NULL, link);
	if (h) {
		h->node_id = *peer;
		text = g_strdup(h->exit_text);
	}
	g_mutex_unlock(&m->lock);
	return text ? text : describe_peer(peer, m);
}

Mesh *mesh_new(const char *name, GMainContext *context, GError **error)
{
	g_return_val_if_fail(name, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	Mesh *m = g_new0(Mesh, 1);

	m->name = g_strdup(name);
	m->creator = syscall(SYS_gettid);
	m->argv0 = read_argv0();
	g_mutex_init(&m->requests_lock);
	g_mutex_init(&m->lock);
	g_cond_init(&m->cond);
	m->hosts = g_hash_table_new_full(NULL, NULL, NULL, (GDestroyNotify)host_free);
	m->listening = g_hash_table_new(g_str_hash, g_str_equal);
	m->pending = g_ptr_array_new_with_free_func((GDestroyNotify)g_source_unref);
	m->pools = g_ptr_array_new_with_free_func((GDestroyNotify)spare_pool_free);
	if (context) {
		m->context = g_main_context_ref(context);
	} else {
		m->context = g_main_context_new();
		m->loop = g_main_loop_new(m->context, FALSE);
		m->thread = g_thread_new("mesh-coordinator", coordinator_thread, m);
	}
	m->node = mesh_node_new();
	m->unode = mesh_unix_node_new(m->node, m->context);
	mesh_unix_node_set_peer_describer(m->unode, describe_peer, m);
	return m;
}

MeshNode *mesh_get_node(Mesh *m)
{
	g_return_val_if_fail(m, NULL);
	return m->node;
}

static const char *const state_names[] = {
	[MESH_HOST_STATE_UNKNOWN] = "unknown",	[MESH_HOST_STATE_STARTING] = "starting",
	[MESH_HOST_STATE_RUNNING] = "running",	[MESH_HOST_STATE_STOPPING] = "stopping",
	[MESH_HOST_STATE_EXITED] = "exited",	[MESH_HOST_STATE_CRASHED] = "crashed",
};

const char *mesh_host_state_to_string(MeshHostState state)
{
	if ((guint)state >= G_N_ELEMENTS(state_names))
		return "unknown";
	return state_names[state];
}

MeshHostState mesh_get_host_state(Mesh *m, GPid pid)
{
	MeshHostState state = MESH_HOST_STATE_UNKNOWN;

	g_return_val_if_fail(m, MESH_HOST_STATE_UNKNOWN);
	g_mutex_lock(&m->lock);
	Host *h = g_hash_table_lookup(m->hosts, GINT_TO_POINTER(pid));
	if (h)
		state = h->state;
	/* The newest exit first. */
	for (guint i = 1; !h && i <= G_N_ELEMENTS(m->gone) && i <= m->gone_next; i++) {
		guint slot = (m->gone_next - i) % G_N_ELEMENTS(m->gone);
		if (m->gone[slot].pid == pid) {
			state = m->gone[slot].state;
			break;
		}
	}
	g_mutex_unlock(&m->lock);
	return state;
}

guint mesh_get_host_count(Mesh *m)
{
	g_return_val_if_fail(m, 0);
	g_mutex_lock(&m->lock);
	guint n = g_hash_table_size(m->hosts) - m->n_spares;
	g_mutex_unlock(&m->lock);
	return n;
}

/* Child exits. */

/* @sandboxed: the host had a profile (MESH_HOST_EXIT_SANDBOX says why it exited). */
static char *describe_status(int status, gboolean sandboxed)
{
	if (WIFEXITED(status) && sandboxed && WEXITSTATUS(status) == MESH_HOST_EXIT_SANDBOX)
		return g_strdup_printf("exited with status %d: its sandbox could not be "
				       "finalized (its stderr says why)",
				       WEXITSTATUS(status));
	if (WIFEXITED(status))
		return g_strdup_printf("exited with status %d", WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return g_strdup_printf("killed by signal %d (%s)", WTERMSIG(status),
				       g_strsignal(WTERMSIG(status)));
	return g_strdup_printf("ended with wait status %#x", status);
}

/* "SIGKILL" for 9, NULL for a signal without a standard name. */
static const char *signal_name(int sig)
{
	static const struct {
		int sig;
		const char *name;
	} names[] = {
		{SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},	  {SIGQUIT, "SIGQUIT"},
		{SIGILL, "SIGILL"},   {SIGTRAP, "SIGTRAP"},   {SIGABRT, "SIGABRT"},
		{SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},	  {SIGKILL, "SIGKILL"},
		{SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"},   {SIGUSR2, "SIGUSR2"},
		{SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"},   {SIGTERM, "SIGTERM"},
		{SIGCHLD, "SIGCHLD"}, {SIGCONT, "SIGCONT"},   {SIGSTOP, "SIGSTOP"},
		{SIGTSTP, "SIGTSTP"}, {SIGTTIN, "SIGTTIN"},   {SIGTTOU, "SIGTTOU"},
		{SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"},   {SIGXFSZ, "SIGXFSZ"},
		{SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"},
		{SIGIO, "SIGIO"},     {SIGSYS, "SIGSYS"},
	};
	for (size_t i = 0; i < G_N_ELEMENTS(names); i++)
		if (names[i].sig == sig)
			return names[i].name;
	return NULL;
}

/*
 * How a host ended: expected if it exited 0, or died of the SIGKILL the mesh
 * sent it (@killed); anything else is a crash. Takes @description.
 */
static void host_exit_fill(MeshHostExit *e, int status, gboolean killed, char *description)
{
	memset(e, 0, sizeof(*e));
	e->description = description;
	if (WIFSIGNALED(status)) {
		e->signaled = TRUE;
		e->signal = WTERMSIG(status);
		e->signal_name = signal_name(e->signal);
		e->expected = killed && e->signal == SIGKILL;
	} else {
		e->status = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
		e->expected = WIFEXITED(status) && e->status == 0;
	}
}

/*
 * Removes an exited host (@text, taken: how it ended, for describe_peer();
 * h->exit: how its process ended) and posts its exit callback. Its context.
 * A local host goes when it is reaped; a remote one once its link drained
 * (host_exited_cb), so that its state, the host count and the callback
 * change together, after everything it sent arrived.
 */
static void host_gone(Host *h, char *text)
{
	Mesh *m = h->mesh;

	/*
	 * Freed after unlocking: closing its request channel may end the
	 * connection, whose describer (describe_peer) takes m->lock.
	 */
	g_mutex_lock(&m->lock);
	if (h->link)
		mesh_p2p_link_get_peer_id(h->link, &h->node_id);
	g_hash_table_steal(m->hosts, GINT_TO_POINTER(h->pid));
	h->state = h->exit.expected ? MESH_HOST_STATE_EXITED : MESH_HOST_STATE_CRASHED;
	if (h->spare) {
		/* Never handed out: replaced (unless spares of its config keep dying). */
		m->n_spares--;
		if (h->pool && ++h->pool->failures == SPARE_MAX_FAILURES)
			g_message("mesh %s: %u spare hosts %s in a row exited before they were "
				  "handed out; not starting more until the next mesh_prestart_hosts()",
				  m->name, SPARE_MAX_FAILURES, h->name);
		if (h->pool)
			spares_refill_locked(m);
	}
	guint slot = m->gone_next++ % G_N_ELEMENTS(m->gone);
	g_free(m->gone[slot].text);
	m->gone[slot].node_id = h->node_id;
	m->gone[slot].text = text;
	m->gone[slot].pid = h->pid;
	m->gone[slot].state = h->state;
	if (h->on_exit && !m->freeing) {
		/* Before the broadcast: it runs before a shutdown's callback. */
		Pending *p = g_new0(Pending, 1);
		p->on_exit = exit_handler_ref(h->on_exit);
		p->name = g_strdup(h->name);
		p->pid = h->pid;
		p->exit = h->exit;
		h->exit.description = NULL; /* the callback's now */
		post_locked(m, h->on_exit->context, p);
	}
	g_cond_broadcast(&m->cond);
	g_mutex_unlock(&m->lock);
	host_free(h);
}

/* How long a remote host's link may go on after its command exited. */
#define REMOTE_DRAIN_MS 5000

static gboolean host_gone_cb(gpointer data)
{
	Host *h = data;
	Mesh *m = h->mesh;

	g_mutex_lock(&m->lock);
	char *text = g_steal_pointer(&h->exit_text);
	g_mutex_unlock(&m->lock);
	g_source_unref(h->drain);
	h->drain = NULL; /* destroyed by returning G_SOURCE_REMOVE */
	host_gone(h, text);
	return G_SOURCE_REMOVE;
}

/*
 * A remote host's link ended (on the coordinator's context). After its
 * command exited: the host goes now. Before: a failed link leaves the
 * command nothing to carry, so it is killed (its exit removes the host); a
 * clean end of stream is the host closing its side, and its exit follows.
 */
static void link_ended_cb(MeshP2pLink *link, const GError *error, gpointer data)
{
	Host *h = data;

	if (h->drain) {
		/* Not host_gone() here: the link may not be freed from this function. */
		g_source_set_ready_time(h->drain, 0);
		return;
	}
	if (error) {
		g_message("mesh %s: the link to host %s (pid %d) failed: %s; killing %s",
			  h->mesh->name, h->name, (int)h->pid, error->message, h->remote);
		pal_child_kill(h->child, SIGKILL);
	}
}

static gboolean host_exited_cb(gint fd, GIOCondition cond, gpointer data)
{
	Host *h = data;
	Mesh *m = h->mesh;
	int status = 0;
	MeshHostExit exit;

	if (pal_child_try_wait(h->child, &status) != 0)
		return G_SOURCE_CONTINUE;
	char *what = describe_status(status, h->sandboxed);
	char *text = g_strdup_printf("host %s (pid %d) %s", h->name, (int)h->pid, what);
	char pid[16];
	g_snprintf(pid, sizeof(pid), "%d", (int)h->pid);
	g_mutex_lock(&m->lock);
	gboolean killed = h->killed;
	g_mutex_unlock(&m->lock);
	host_exit_fill(&exit, status, killed, what);
	if (exit.expected)
		debug_log(LOG_FIELDS("MESH_MESH", m->name, "MESH_HOST", h->name, "MESH_PID", pid),
			  "mesh %s: host %s (pid %d) %s", m->name, h->name, (int)h->pid,
			  WIFEXITED(status) ? "exited successfully" : "killed by the mesh");
	else
		debug_log(LOG_FIELDS("MESH_MESH", m->name, "MESH_HOST", h->name, "MESH_PID", pid),
			  "mesh %s: host %s (pid %d) abnormal exit: %s", m->name, h->name,
			  (int)h->pid, what);

	g_source_unref(h->watch);
	h->watch = NULL;
	if (h->link && mesh_p2p_link_get_state(h->link, NULL) <= MESH_P2P_LINK_OPEN) {
		/*
		 * A remote host's command exited: what it wrote before is still
		 * in the socket, the end of stream after it. The host goes when
		 * the link has read it all (link_ended_cb), or at a deadline (a
		 * process the command left behind may hold the stream open).
		 */
		g_mutex_lock(&m->lock);
		h->exit_text = text;
		h->exit = exit;
		g_mutex_unlock(&m->lock);
		h->drain = g_timeout_source_new(REMOTE_DRAIN_MS);
		g_source_set_callback(h->drain, host_gone_cb, h, NULL);
		g_source_attach(h->drain, m->context);
		return G_SOURCE_REMOVE;
	}
	h->exit = exit;
	host_gone(h, text);
	return G_SOURCE_REMOVE;
}

/* Launching. */

/* TRUE, with @error set, once mesh_shutdown() began: no more hosts or listeners. */
static gboolean is_shut_down(Mesh *m, GError **error)
{
	g_mutex_lock(&m->lock);
	gboolean down = m->shut_down;
	g_mutex_unlock(&m->lock);
	if (down)
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SHUT_DOWN,
			    "mesh %s: the mesh is shut down", m->name);
	return down;
}

/*
 * @inv NULL: a stdio invitation (MESH_STDIO_INVITATION), the name alone.
 * @sandboxed: the host must be sandboxed before it joins.
 */
static char *encode_env_invitation(const char *node_name, MeshInvitation *inv, gboolean sandboxed,
				   gboolean spare)
{
	MeshNodeId ln, rn;
	MeshPortId lp, rp;
	MeshProcess__InvitationAddress addr = MESH_PROCESS__INVITATION_ADDRESS__INIT;
	MeshProcess__EnvInvitation env = MESH_PROCESS__ENV_INVITATION__INIT;
	env.node_name = (char *)node_name;
	env.sandboxed = sandboxed;
	env.spare = spare;
	if (inv) {
		mesh_invitation_get_address(inv, &ln, &lp, &rn, &rp);
		addr.local_addr = process_address_new(&ln, &lp);
		addr.remote_addr = process_address_new(&rn, &rp);
		env.address = &addr;
		env.socket_fd = 3;
		env.c_extensions = mesh_invitation_get_extensions(inv);
	}

	size_t size = protobuf_c_message_get_packed_size(&env.base);
	uint8_t *buf = g_malloc(size);
	protobuf_c_message_pack(&env.base, buf);
	char *b64 = g_base64_encode(buf, size);
	g_free(buf);
	if (inv) {
		protobuf_c_message_free_unpacked(&addr.local_addr->base, NULL);
		protobuf_c_message_free_unpacked(&addr.remote_addr->base, NULL);
	}
	return b64;
}

typedef struct {
	Mesh *mesh;
	const MeshProcessConfig *config;
	MeshInvitation *inv;  /* a local host */
	MeshPort *boot_port;  /* a remote host: the link's port (taken) */
	MeshSender *requests;
	MeshReceiver *events;
	GError *error;
	GPid pid;
	/* A spare of @pool: its bootstrap channel, the hello's answer, its requests (taken). */
	gboolean spare;
	SparePool *pool;
	MeshSender *spare_boot;
	MeshOneshotReceiver *spare_ready;
	MeshSender *spare_requests;
} Launch;

/*
 * MESH_PROCESS_EXT=0: the host startup on upstream's wire alone (no events
 * channel in the InitialMessage), as a Rust host would see it.
 */
static gboolean host_ext_enabled(void)
{
	const char *v = getenv("MESH_PROCESS_EXT");
	return !v || strcmp(v, "0") != 0;
}

/* An upstream host's answer to its first inspect: it joined and serves requests. */
static void probe_cb(MeshOneshotReceiver *r, gpointer data)
{
	Host *h = data;
	ProtobufCMessage *node = NULL;
	GError *error = NULL;

	if (!mesh_oneshot_recv(r, 0, &node, &error) &&
	    (g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY) ||
	     g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT))) {
		g_error_free(error);
		return; /* not yet; the receiver is still ours */
	}
	h->probe = NULL; /* consumed by the value or the final error */
	if (node) {
		g_mutex_lock(&h->mesh->lock);
		if (h->state == MESH_HOST_STATE_STARTING)
			h->state = MESH_HOST_STATE_RUNNING;
		g_mutex_unlock(&h->mesh->lock);
		mesh_payload_message_free(node);
	}
	g_clear_error(&error);
}

/*
 * A host that does not say it joined (an upstream one) is RUNNING once it
 * answers an inspect of depth 0 (upstream's host serves requests once it
 * has its initial message).
 */
static void host_probe(Host *h, MeshSender *requests)
{
	MeshOneshotSender *os;
	mesh_oneshot_new(&mesh_process__inspect_node__descriptor, &os, &h->probe);
	MeshProcess__HostRequest *req =
		process_inspect_request_new(mesh_oneshot_sender_into_port(os), 0);
	mesh_sender_send(requests, &req->base);
	mesh_oneshot_receiver_set_callback(h->probe, h->mesh->context, probe_cb, h, NULL);
}

/* The host's events, on the mesh's context: "joined" makes it RUNNING. */
static void host_events_cb(MeshReceiver *r, gpointer data)
{
	Host *h = data;
	ProtobufCMessage *msg;
	GError *error = NULL;

	while (mesh_receiver_recv(r, 0, &msg, &error)) {
		MeshProcess__HostEvent *ev = (MeshProcess__HostEvent *)msg;
		if (ev->event_case == MESH_PROCESS__HOST_EVENT__EVENT_JOINED) {
			g_mutex_lock(&h->mesh->lock);
			h->c_host = TRUE;
			if (h->state == MESH_HOST_STATE_STARTING)
				h->state = MESH_HOST_STATE_RUNNING;
			g_mutex_unlock(&h->mesh->lock);
		}
		mesh_payload_message_free(msg);
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
		/* The channel ended: an upstream host drops it unread. */
		mesh_receiver_set_callback(r, NULL, NULL, NULL, NULL);
		g_mutex_lock(&h->mesh->requests_lock);
		g_mutex_lock(&h->mesh->lock);
		gboolean c_host = h->c_host;
		MeshSender *own = h->requests;
		g_mutex_unlock(&h->mesh->lock);
		/* Not under the mesh's lock: the send may wait (requests_lock). */
		MeshSender *requests = own ? mesh_sender_clone(own) : NULL;
		g_mutex_unlock(&h->mesh->requests_lock);
		if (!c_host && requests && !h->probe)
			host_probe(h, requests);
		mesh_sender_free(requests);
	}
	g_clear_error(&error);
}

/* A spare answered its hello: it joined and waits for its hand-out. */
static void spare_ready_cb(MeshOneshotReceiver *r, gpointer data)
{
	Host *h = data;
	MeshMessage *msg = NULL;
	GError *error = NULL;

	if (!mesh_oneshot_recv_message(r, 0, &msg, &error) &&
	    (g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY) ||
	     g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT))) {
		g_error_free(error);
		return; /* not yet */
	}
	g_mutex_lock(&h->mesh->lock);
	h->spare_ready = NULL; /* consumed by the value or the final error */
	if (msg) {
		h->ready = TRUE;
		/* Handed out before it was ready: it runs the host function now. */
		if (!h->spare && h->state == MESH_HOST_STATE_STARTING)
			h->state = MESH_HOST_STATE_RUNNING;
	}
	g_cond_broadcast(&h->mesh->cond);
	g_mutex_unlock(&h->mesh->lock);
	mesh_message_free(msg);
	g_clear_error(&error); /* it died: its exit removes it */
}

/* Appends @word to @spawn quoted for the remote shell. */
static void add_quoted(PalSpawn *spawn, const char *word)
{
	char *q = g_shell_quote(word);
	pal_spawn_add_arg(spawn, q);
	g_free(q);
}

/*
 * The finalize part of @sb encoded as PAL_SANDBOX's value, for a remote
 * host's environment words (pal_sandbox_to_env(): no namespaces, the spawn
 * part is not applied). Returns NULL with @error set.
 */
static char *remote_sandbox_value(PalSandbox *sb, const char *name, GError **error)
{
	char *value = NULL;
	int r = pal_sandbox_to_env(sb, &value);

	if (r < 0) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN,
			    "cannot start host %s: sandbox: encoding its profile: %s", name,
			    g_strerror(-r));
		return NULL;
	}
	/* g_free()able, as the callers expect. */
	char *copy = g_strdup(value);
	free(value);
	return copy;
}

/*
 * A remote host's spawn: the remote command, then the host's command line
 * as quoted words (`env MESH_STDIO_INVITATION=... [PAL_SANDBOX=...]
 * KEY=VALUE ... PROGRAM ARGS ... NAME`). Its stdin and stdout are set by
 * the caller. NULL with @error set when the profile cannot be encoded.
 */
static PalSpawn *remote_spawn_new(const MeshProcessConfig *c, GError **error)
{
	PalSpawn *spawn = pal_spawn_new(c->remote[0]);
	for (guint i = 1; c->remote[i]; i++)
		pal_spawn_add_arg(spawn, c->remote[i]);
	add_quoted(spawn, "env");
	char *inv = encode_env_invitation(c->name, NULL, c->sandbox != NULL, FALSE);
	char *assign = g_strdup_printf("%s=%s", MESH_STDIO_INVITATION, inv);
	add_quoted(spawn, assign);
	g_free(assign);
	g_free(inv);
	if (c->sandbox) {
		/* The finalize part only: the spawn part would apply to ssh here. */
		char *value = remote_sandbox_value(c->sandbox, c->name, error);
		if (!value) {
			pal_spawn_free(spawn);
			return NULL;
		}
		assign = g_strdup_printf("%s=%s", PAL_SANDBOX_ENV, value);
		add_quoted(spawn, assign);
		g_free(assign);
		g_free(value);
	}
	for (guint i = 0; i + 1 < c->env->len; i += 2) {
		assign = g_strdup_printf("%s=%s", (char *)c->env->pdata[i],
					 (char *)c->env->pdata[i + 1]);
		add_quoted(spawn, assign);
		g_free(assign);
	}
	char *self = c->program ? NULL : g_file_read_link("/proc/self/exe", NULL);
	add_quoted(spawn, c->program ? c->program : self ? self : "/proc/self/exe");
	g_free(self);
	for (guint i = 0; i < c->args->len; i++)
		add_quoted(spawn, c->args->pdata[i]);
	if (!c->skip_worker_arg)
		add_quoted(spawn, c->name);
	return spawn;
}

/* A step of a sandbox profile's spawn part (pal_sandbox_apply()), as pal_spawn names it. */
static gboolean is_sandbox_step(const char *step)
{
	static const char *const steps[] = {"namespaces", "userns_map", "private_tmp", "rlimit",
					    "bounding_set", "dumpable"};
	for (size_t i = 0; step && i < G_N_ELEMENTS(steps); i++)
		if (strcmp(step, steps[i]) == 0)
			return TRUE;
	return FALSE;
}

static gboolean launch_cb(gpointer data)
{
	Launch *l = data;
	Mesh *m = l->mesh;
	const MeshProcessConfig *c = l->config;
	PalSpawn *spawn;
	PalChild *child = NULL;
	int stderr_fd = -1, r, link_fds[2] = {-1, -1};

	if (c->remote) {
		spawn = remote_spawn_new(c, &l->error);
		if (!spawn)
			goto out;
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link_fds) < 0) {
			g_set_error(&l->error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN,
				    "cannot start host %s: socketpair: %s", c->name,
				    g_strerror(errno));
			goto out;
		}
		pal_spawn_set_stdin(spawn, PAL_STDIO_FD, link_fds[1]);
		pal_spawn_set_stdout(spawn, PAL_STDIO_FD, link_fds[1]);
	} else {
		spawn = pal_spawn_new(c->program ? c->program : "/proc/self/exe");
		pal_spawn_set_arg0(spawn, c->program ? c->program : m->argv0);
		for (guint i = 0; i < c->args->len; i++)
			pal_spawn_add_arg(spawn, c->args->pdata[i]);
		if (!c->skip_worker_arg)
			pal_spawn_add_arg(spawn, c->name);
		char *env = encode_env_invitation(c->name, l->inv, c->sandbox != NULL, l->spare);
		pal_spawn_env_set(spawn, MESH_WORKER_INVITATION, env);
		g_free(env);
		for (guint i = 0; i + 1 < c->env->len; i += 2)
			pal_spawn_env_set(spawn, c->env->pdata[i], c->env->pdata[i + 1]);
		pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, -1);
		pal_spawn_set_stdout(spawn, PAL_STDIO_NULL, -1);
		pal_spawn_dup_fd(spawn, mesh_invitation_get_fd(l->inv), 3);
	}
	if (c->stderr_path) {
		stderr_fd = open(c->stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (stderr_fd < 0) {
			g_set_error(&l->error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN,
				    "cannot open %s: %s", c->stderr_path, g_strerror(errno));
			goto out;
		}
		pal_spawn_set_stderr(spawn, PAL_STDIO_FD, stderr_fd);
	}
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	if (c->sandbox && !c->remote) {
		r = pal_sandbox_apply(c->sandbox, spawn);
		if (r < 0) {
			const char *step = pal_sandbox_get_failed_step(c->sandbox);
			g_set_error(&l->error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN,
				    "cannot start host %s: sandbox: %s%s%s", c->name,
				    step ? step : "", step ? ": " : "", g_strerror(-r));
			goto out;
		}
	}
	if (c->spawn_hook && !c->spawn_hook(spawn, c->spawn_hook_data, &l->error))
		goto out;

	r = pal_spawn_run(spawn, &child);
	if (r < 0) {
		const char *step = pal_spawn_get_failed_step(spawn);
		g_set_error(&l->error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN,
			    "cannot start host %s (%s): %s%s%s%s%s", c->name,
			    c->remote ? c->remote[0]
			    : c->program ? c->program
					 : "this program",
			    c->sandbox && !c->remote && is_sandbox_step(step) ? "sandbox: " : "",
			    step ? step : "", step ? ": " : "", g_strerror(-r),
			    g_strcmp0(step, "dumpable") == 0
				    ? " (this process is not dumpable, as after a uid change: "
				      "a host cannot write its user namespace's maps; see "
				      "doc/sandbox.md)"
				    : "");
		goto out;
	}

	Host *h = g_new0(Host, 1);
	h->mesh = m;
	h->name = g_strdup(c->name);
	h->pid = pal_child_get_pid(child);
	h->child = child;
	h->sandboxed = c->sandbox != NULL;
	h->requests = l->requests;
	l->requests = NULL;
	if (c->remote) {
		close(link_fds[1]);
		link_fds[1] = -1;
		/* Its node id comes with its hello (describe_remote() records it). */
		h->remote = g_strjoinv(" ", c->remote);
		h->link = mesh_p2p_link_new_take(m->node, link_fds[0], link_fds[0],
						 g_steal_pointer(&l->boot_port), m->context,
						 &l->error);
		link_fds[0] = -1;
		if (!h->link) {
			g_prefix_error(&l->error, "host %s: ", c->name);
			l->error->domain = MESH_PROCESS_ERROR;
			l->error->code = MESH_PROCESS_ERROR_SPAWN;
			pal_child_kill(child, SIGKILL);
			pal_child_wait(child, NULL);
			host_free(h);
			goto out;
		}
		mesh_p2p_link_set_peer_describer(h->link, describe_remote, m, NULL);
		mesh_p2p_link_set_ended_func(h->link, link_ended_cb, h, NULL);
	} else {
		mesh_invitation_get_address(l->inv, &h->node_id, NULL, NULL, NULL);
	}
	h->events = l->events;
	l->events = NULL;
	h->state = MESH_HOST_STATE_STARTING;
	if (l->spare) {
		/* No exit callback, requests or events until handed out (spare_hand_out()). */
		h->spare = TRUE;
		h->pool = l->pool;
		h->spare_boot = g_steal_pointer(&l->spare_boot);
		h->spare_ready = g_steal_pointer(&l->spare_ready);
		h->spare_requests = g_steal_pointer(&l->spare_requests);
		mesh_oneshot_receiver_set_callback(h->spare_ready, m->context, spare_ready_cb, h,
						   NULL);
	} else {
		h->on_exit = exit_handler_ref(c->on_exit);
		if (h->events)
			mesh_receiver_set_callback(h->events, m->context, host_events_cb, h, NULL);
		else
			host_probe(h, h->requests); /* not in the table yet: nothing frees it */
	}
	int pidfd = pal_child_get_pidfd(child);
	if (pidfd >= 0) {
		h->watch = g_unix_fd_source_new(pidfd, G_IO_IN);
		g_source_set_callback(h->watch, G_SOURCE_FUNC(host_exited_cb), h, NULL);
		g_source_attach(h->watch, m->context);
	}
	MeshSender *retired = NULL;
	g_mutex_lock(&m->lock);
	g_hash_table_insert(m->hosts, GINT_TO_POINTER(h->pid), h);
	if (h->spare) {
		m->n_spares++;
		/* Its pool went, or the mesh shut down, while it was spawned: it ends. */
		if (m->shut_down || !g_ptr_array_find(m->pools, h->pool, NULL)) {
			h->pool = NULL;
			retired = g_steal_pointer(&h->spare_boot);
		}
	}
	g_mutex_unlock(&m->lock);
	mesh_sender_free(retired);
	l->pid = h->pid;
	char pid[16];
	g_snprintf(pid, sizeof(pid), "%d", (int)h->pid);
	debug_log(LOG_FIELDS("MESH_MESH", m->name, "MESH_HOST", h->name, "MESH_PID", pid),
		  "mesh %s: launched host %s (pid %d)", m->name, h->name, (int)h->pid);
out:
	if (stderr_fd >= 0)
		close(stderr_fd);
	for (int i = 0; i < 2; i++)
		if (link_fds[i] >= 0)
			close(link_fds[i]);
	mesh_port_close(g_steal_pointer(&l->boot_port));
	pal_spawn_free(spawn);
	return G_SOURCE_REMOVE;
}

/* Spare hosts. */

static SparePool *find_pool_locked(Mesh *m, const MeshProcessConfig *config)
{
	for (guint i = 0; i < m->pools->len; i++) {
		SparePool *p = m->pools->pdata[i];
		if (config_spawns_same(p->config, config))
			return p;
	}
	return NULL;
}

static guint count_spares_locked(Mesh *m, SparePool *pool)
{
	GHashTableIter it;
	gpointer value;
	guint n = 0;

	g_hash_table_iter_init(&it, m->hosts);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		Host *h = value;
		if (h->spare && h->pool == pool)
			n++;
	}
	return n;
}

/* A pool that wants one more spare (and may have it), or NULL. */
static SparePool *pool_short_locked(Mesh *m)
{
	if (m->shut_down || m->freeing)
		return NULL;
	for (guint i = 0; i < m->pools->len; i++) {
		SparePool *p = m->pools->pdata[i];
		if (p->failures < SPARE_MAX_FAILURES && count_spares_locked(m, p) < p->want)
			return p;
	}
	return NULL;
}

/*
 * Starts a spare of @pool with @config (a snapshot of the pool's, taken
 * under the lock: the pool may go meanwhile). It joins, answers its hello
 * (spare_ready_cb) and waits for the InitialMessage.
 */
static gboolean spare_start(Mesh *m, SparePool *pool, const MeshProcessConfig *config,
			    GError **error)
{
	MeshPort *mine, *theirs;
	MeshInvitation *inv = NULL;
	MeshOneshotSender *ready;
	MeshOneshotReceiver *ready_recv;

	mesh_port_new_pair(&mine, &theirs);
	if (!mesh_unix_node_invite(m->unode, theirs, 0, &inv, error)) {
		mesh_port_close(mine);
		return FALSE;
	}
	MeshSender *boot = mesh_sender_from_port(mine, NULL);
	mesh_oneshot_new(NULL, &ready, &ready_recv);
	/*
	 * The hello: the oneshot for its answer, and its request channel. Its
	 * ports move now, while it waits, not at the hand-out.
	 */
	MeshSender *requests;
	MeshReceiver *requests_recv;
	mesh_channel_new(&mesh_process__host_request__descriptor, &requests, &requests_recv);
	MeshMessage *hello = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(hello, mesh_oneshot_sender_into_port(ready));
	mesh_message_add_port_take(hello, mesh_receiver_into_port(requests_recv));
	mesh_sender_send_message(boot, hello); /* waits in the port until the spare joined */
	Launch l = {.mesh = m,
		    .config = config,
		    .inv = inv,
		    .spare = TRUE,
		    .pool = pool,
		    .spare_boot = boot,
		    .spare_ready = ready_recv,
		    .spare_requests = requests};
	run_on_long_lived_thread(m, launch_cb, &l);
	mesh_invitation_free(inv);
	mesh_sender_free(l.spare_boot);
	mesh_oneshot_receiver_free(l.spare_ready);
	mesh_sender_free(l.spare_requests);
	if (l.error) {
		g_propagate_error(error, l.error);
		return FALSE;
	}
	return TRUE;
}

/* On the mesh's context: starts the spares the pools miss. */
static gboolean refill_cb(gpointer data)
{
	Mesh *m = data;

	for (;;) {
		g_mutex_lock(&m->lock);
		SparePool *pool = pool_short_locked(m);
		MeshProcessConfig *c = pool ? config_copy(pool->config) : NULL;
		if (!pool)
			g_source_unref(g_steal_pointer(&m->refill)); /* a later need makes another */
		g_mutex_unlock(&m->lock);
		if (!pool)
			return G_SOURCE_REMOVE;
		GError *error = NULL;
		if (!spare_start(m, pool, c, &error)) {
			g_message("mesh %s: cannot start a spare host %s: %s", m->name, c->name,
				  error->message);
			g_error_free(error);
			g_mutex_lock(&m->lock);
			if (g_ptr_array_find(m->pools, pool, NULL))
				pool->failures++;
			g_mutex_unlock(&m->lock);
		}
		mesh_process_config_free(c);
	}
}

/*
 * How long after a hand-out (or a spare's death) its replacement is
 * spawned: a spawn costs a few ms of CPU, which the host just handed out
 * would otherwise compete with for its first work.
 */
#define SPARE_REFILL_DELAY_MS 20

/* Starts missing spares soon, on the mesh's context (at idle priority). */
static void spares_refill_locked(Mesh *m)
{
	if (m->refill || !pool_short_locked(m))
		return;
	m->refill = g_timeout_source_new(SPARE_REFILL_DELAY_MS);
	g_source_set_priority(m->refill, G_PRIORITY_DEFAULT_IDLE);
	g_source_set_callback(m->refill, refill_cb, m, NULL);
	g_source_attach(m->refill, m->context);
}

/* FALSE once @h exited (its exit may not have been handled yet). */
static gboolean spare_alive(Host *h)
{
	struct pollfd p = {.fd = pal_child_get_pidfd(h->child), .events = POLLIN};
	return p.fd < 0 || poll(&p, 1, 0) == 0;
}

/*
 * Hands a living spare of @config's pool out, preferring one that is ready,
 * sending it its InitialMessage with @initial (taken when a spare was
 * found). Returns: its pid, 0 without one (@initial untouched).
 */
static GPid spare_hand_out(Mesh *m, const MeshProcessConfig *config, MeshMessage *initial)
{
	GHashTableIter it;
	gpointer value;
	Host *best = NULL;

	if (!host_ext_enabled())
		return 0; /* without the events channel, a launch needs host_probe() */
	g_mutex_lock(&m->lock);
	SparePool *pool = m->shut_down ? NULL : find_pool_locked(m, config);
	if (pool) {
		g_hash_table_iter_init(&it, m->hosts);
		while (g_hash_table_iter_next(&it, NULL, &value)) {
			Host *h = value;
			if (!h->spare || h->pool != pool || !h->spare_boot || !spare_alive(h))
				continue;
			if (!best || (h->ready && !best->ready))
				best = h;
			if (best->ready)
				break;
		}
	}
	if (!best) {
		g_mutex_unlock(&m->lock);
		return 0;
	}
	/*
	 * It has its request channel (the hello's) and is a C host: the
	 * hand-out is one message, the caller's initial message and the pid,
	 * with no port of ours to move and no "joined" event to wait for.
	 */
	Host *h = best;
	pool->failures = 0;
	h->spare = FALSE;
	h->pool = NULL;
	m->n_spares--;
	MeshSender *boot = g_steal_pointer(&h->spare_boot);
	h->requests = g_steal_pointer(&h->spare_requests);
	h->c_host = TRUE;
	if (h->ready)
		h->state = MESH_HOST_STATE_RUNNING; /* else once it answers (spare_ready_cb) */
	h->on_exit = exit_handler_ref(config->on_exit);
	GPid pid = h->pid;
	g_mutex_unlock(&m->lock);

	mesh_sender_send_message(boot, process_initial_message_new(NULL, initial, NULL, (guint32)pid));
	mesh_sender_free(boot);
	/* After the send: scheduling the refill wakes the mesh's context. */
	g_mutex_lock(&m->lock);
	spares_refill_locked(m);
	g_mutex_unlock(&m->lock);
	char pid_s[16];
	g_snprintf(pid_s, sizeof(pid_s), "%d", (int)pid);
	debug_log(LOG_FIELDS("MESH_MESH", m->name, "MESH_HOST", config->name, "MESH_PID", pid_s),
		  "mesh %s: handed out spare host %s (pid %d)", m->name, config->name, (int)pid);
	return pid;
}

gboolean mesh_prestart_hosts(Mesh *m, const MeshProcessConfig *config, guint n, GError **error)
{
	GPtrArray *retired = g_ptr_array_new_with_free_func((GDestroyNotify)mesh_sender_free);
	GHashTableIter it;
	gpointer value;

	g_return_val_if_fail(m && config, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (config->remote) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "host %s: a remote host cannot have spares", config->name);
		g_ptr_array_free(retired, TRUE);
		return FALSE;
	}
	if (is_shut_down(m, error)) {
		g_ptr_array_free(retired, TRUE);
		return FALSE;
	}
	g_mutex_lock(&m->lock);
	SparePool *pool = find_pool_locked(m, config);
	if (!pool && n > 0) {
		pool = g_new0(SparePool, 1);
		pool->config = config_copy(config);
		g_ptr_array_add(m->pools, pool);
	}
	if (pool) {
		pool->want = n;
		pool->failures = 0;
		/* Fewer wanted: the extra ones (those not ready first) end. */
		guint have = count_spares_locked(m, pool);
		for (int pass = 0; pass < 2 && have > n; pass++) {
			g_hash_table_iter_init(&it, m->hosts);
			while (have > n && g_hash_table_iter_next(&it, NULL, &value)) {
				Host *h = value;
				if (!h->spare || h->pool != pool || (pass == 0 && h->ready))
					continue;
				h->pool = NULL;
				if (h->spare_boot)
					g_ptr_array_add(retired, g_steal_pointer(&h->spare_boot));
				have--;
			}
		}
		if (n == 0)
			g_ptr_array_remove_fast(m->pools, pool);
	}
	g_mutex_unlock(&m->lock);
	g_ptr_array_free(retired, TRUE); /* unlocked: closing may end a connection */

	for (;;) {
		g_mutex_lock(&m->lock);
		pool = m->shut_down ? NULL : find_pool_locked(m, config);
		gboolean need = pool && count_spares_locked(m, pool) < pool->want;
		MeshProcessConfig *c = need ? config_copy(pool->config) : NULL;
		g_mutex_unlock(&m->lock);
		if (!need)
			return TRUE;
		gboolean ok = spare_start(m, pool, c, error);
		mesh_process_config_free(c);
		if (!ok)
			return FALSE;
	}
}

guint mesh_get_spare_count(Mesh *m, gboolean ready)
{
	GHashTableIter it;
	gpointer value;
	guint n = 0;

	g_return_val_if_fail(m, 0);
	g_mutex_lock(&m->lock);
	g_hash_table_iter_init(&it, m->hosts);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		Host *h = value;
		if (h->spare && h->pool && (!ready || h->ready))
			n++;
	}
	g_mutex_unlock(&m->lock);
	return n;
}

GPid mesh_launch_host(Mesh *m, const MeshProcessConfig *config, MeshMessage *initial,
		      GError **error)
{
	MeshSender *requests, *events;
	MeshReceiver *requests_recv, *events_recv;
	MeshOneshotSender *boot;
	MeshOneshotReceiver *boot_recv;
	MeshInvitation *inv = NULL;

	if (!m || !config || (error && *error)) {
		mesh_message_free(initial); /* taken in all cases */
		g_return_val_if_fail(m && config, 0);
		g_return_val_if_fail(error == NULL || *error == NULL, 0);
	}
	g_return_val_if_fail(initial, 0);
	if (is_shut_down(m, error)) {
		mesh_message_free(initial);
		return 0;
	}
	if (!config->remote) {
		GPid pid = spare_hand_out(m, config, initial);
		if (pid)
			return pid;
	}
	mesh_channel_new(&mesh_process__host_request__descriptor, &requests, &requests_recv);
	mesh_oneshot_new(NULL, &boot, &boot_recv);
	MeshPort *boot_port = NULL;
	if (config->remote) {
		boot_port = mesh_oneshot_receiver_into_port(boot_recv); /* the link's, once spawned */
	} else if (!mesh_unix_node_invite(m->unode, mesh_oneshot_receiver_into_port(boot_recv), 0,
					  &inv, error)) {
		mesh_oneshot_sender_free(boot);
		mesh_sender_free(requests);
		mesh_receiver_free(requests_recv);
		mesh_message_free(initial);
		return 0;
	}
	/*
	 * Upstream's startup: one oneshot with the InitialMessage (our events
	 * channel in field 3 unless MESH_PROCESS_EXT=0, and then the host's pid
	 * in field 4). Sent once spawned so that it can carry the pid: in a
	 * PID namespace the host cannot learn it itself (and it reads nothing
	 * before it joined).
	 */
	MeshPort *events_port = NULL;
	events = NULL;
	events_recv = NULL;
	if (host_ext_enabled()) {
		mesh_channel_new(&mesh_process__host_event__descriptor, &events, &events_recv);
		events_port = mesh_sender_into_port(events);
	}
	MeshPort *requests_port = mesh_receiver_into_port(requests_recv);
	/*
	 * Spawn from a thread that lives as long as the mesh, never from the
	 * caller's: the parent-death signal follows the spawning thread.
	 */
	Launch l = {.mesh = m,
		    .config = config,
		    .inv = inv,
		    .boot_port = boot_port,
		    .requests = requests,
		    .events = events_recv};
	run_on_long_lived_thread(m, launch_cb, &l);
	mesh_invitation_free(inv); /* the child has its copy of the socket */
	mesh_sender_free(l.requests);
	mesh_receiver_free(l.events);
	if (l.error) {
		mesh_port_close(requests_port);
		mesh_port_close(events_port);
		mesh_message_free(initial);
		mesh_oneshot_sender_free(boot);
		g_propagate_error(error, l.error);
		return 0;
	}
	mesh_oneshot_send_message(boot, process_initial_message_new(
						requests_port, initial, events_port,
						config->remote ? 0 : (guint32)l.pid));
	return l.pid;
}

/* Requests to hosts. */

static MeshSender *host_requests(Mesh *m, GPid pid)
{
	g_mutex_lock(&m->requests_lock);
	g_mutex_lock(&m->lock);
	Host *h = g_hash_table_lookup(m->hosts, GINT_TO_POINTER(pid));
	MeshSender *own = h ? h->requests : NULL;
	g_mutex_unlock(&m->lock);
	/*
	 * The clone sends, and a send waits while a remote host's link is full
	 * (doc/libmeshremote-p2p.md): never under the mesh's lock, which every
	 * call and the host's own callbacks take.
	 */
	MeshSender *s = own ? mesh_sender_clone(own) : NULL;
	g_mutex_unlock(&m->requests_lock);
	return s;
}

gboolean mesh_crash(Mesh *m, GPid pid, GError **error)
{
	g_return_val_if_fail(m, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (pid == getpid()) {
		g_printerr("mesh %s: crash requested for this process\n", m->name);
		abort();
	}
	MeshSender *s = host_requests(m, pid);
	if (!s) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_NO_SUCH_HOST,
			    "no host with pid %d", (int)pid);
		return FALSE;
	}
	MeshProcess__HostRequest *req = g_malloc(sizeof(*req));
	mesh_process__host_request__init(req);
	req->request_case = MESH_PROCESS__HOST_REQUEST__REQUEST_CRASH;
	req->crash = g_malloc(sizeof(*req->crash));
	mesh_process__host_crash__init(req->crash);
	mesh_sender_send(s, &req->base);
	mesh_sender_free(s);
	return TRUE;
}

/*
 * An inspect in progress: the parent's part of the JSON, then each host's
 * request sent with a oneshot for its report. The sync and async forms
 * share it; it no longer needs the mesh once begun.
 */
typedef struct Inspect Inspect;

typedef struct {
	Inspect *in;
	GPid pid;
	char *name;
	MeshNodeId node_id;
	char *remote; /* a remote host's command, or NULL */
	const char *state; /* static */
	gboolean deferred; /* asked with upstream's Deferred: the reply is an InternalNode */
	gboolean spare;    /* a spare host: not asked (it serves no requests yet) */
	MeshOneshotReceiver *reply; /* NULL once taken, or no request channel */
	char *report;               /* the host's JSON, or {"error": ...} */
} InspectHost;

struct Inspect {
	GString *out;
	InspectHost *hosts;
	guint n, n_left;
	/* Async: on the context only. */
	GMainContext *context;
	gint64 deadline; /* monotonic us, -1 none */
	GSource *deadline_source;
	MeshInspectFunc callback;
	gpointer user_data;
	GDestroyNotify notify;
};

static Inspect *inspect_begin(Mesh *m)
{
	Inspect *in = g_new0(Inspect, 1);
	char id[33];
	guint64 rss;
	guint threads;

	in->out = g_string_new("{\"mesh\":");
	process_json_string(in->out, m->name);
	process_self_stats(-1, &rss, &threads);
	g_string_append_printf(in->out, ",\"parent\":{\"pid\":%d,\"node\":\"%s\",\"rss_kib\":%" G_GUINT64_FORMAT
				    ",\"threads\":%u,\"remote_nodes\":%u},\"hosts\":[",
			       (int)getpid(), mesh_uuid_to_string(mesh_node_get_id(m->node), id), rss,
			       threads, mesh_node_count_remotes(m->node));

	/* Ask every host at once, then collect. */
	g_mutex_lock(&m->lock);
	GList *hosts = g_hash_table_get_values(m->hosts);
	in->n = g_list_length(hosts);
	in->hosts = g_new0(InspectHost, in->n ? in->n : 1);
	guint i = 0;
	for (GList *l = hosts; l; l = l->next, i++) {
		Host *h = l->data;
		if (h->link)
			mesh_p2p_link_get_peer_id(h->link, &h->node_id); /* once its hello came */
		in->hosts[i].in = in;
		in->hosts[i].pid = h->pid;
		in->hosts[i].name = g_strdup(h->name);
		in->hosts[i].node_id = h->node_id;
		in->hosts[i].remote = g_strdup(h->remote);
		in->hosts[i].state = mesh_host_state_to_string(h->state);
		in->hosts[i].deferred = !h->c_host;
		if (h->spare) {
			in->hosts[i].spare = TRUE;
			in->hosts[i].state = "spare";
			in->hosts[i].report = g_strdup_printf("{\"ready\":%s}",
							      h->ready ? "true" : "false");
		}
	}
	g_mutex_unlock(&m->lock);
	g_list_free(hosts);

	for (i = 0; i < in->n; i++) {
		InspectHost *ih = &in->hosts[i];
		if (ih->spare)
			continue;
		MeshSender *s = host_requests(m, ih->pid);
		if (!s) {
			ih->report = process_inspect_error_json("no request channel");
			continue;
		}
		/*
		 * A C host gets our JSON request; any other (or one not joined
		 * yet) upstream's Deferred, whose InternalNode we turn into JSON.
		 */
		ih->reply = process_inspect_ask(s, ih->deferred);
		mesh_sender_free(s);
		in->n_left++;
	}
	return in;
}

/* Host @ih's report, waiting up to @timeout_us (0: only if it is there). */
static void inspect_take(InspectHost *ih, gint64 timeout_us)
{
	ProtobufCMessage *reply = NULL;
	GError *error = NULL;

	if (!ih->reply)
		return;
	if (mesh_oneshot_recv(ih->reply, timeout_us, &reply, &error)) {
		if (ih->deferred)
			ih->report = process_inspect_node_to_json((MeshProcess__InspectNode *)reply);
		else
			ih->report = g_strdup(((MeshProcess__InspectReply *)reply)->json);
		mesh_payload_message_free(reply);
	} else {
		/* A timeout (or nothing yet) did not consume the receiver; a final error did. */
		if (g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT) ||
		    g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY))
			mesh_oneshot_receiver_free(ih->reply);
		ih->report = process_inspect_error_json(error->message);
		g_error_free(error);
	}
	ih->reply = NULL;
	ih->in->n_left--;
}

/* The JSON (transfer full); frees @in. Hosts still waited for report a timeout. */
static char *inspect_end(Inspect *in)
{
	char id[33];

	for (guint i = 0; i < in->n; i++) {
		InspectHost *ih = &in->hosts[i];
		if (ih->reply) {
			mesh_oneshot_receiver_free(ih->reply); /* a late report is dropped */
			ih->report = process_inspect_error_json("no value within the timeout");
		}
		if (i)
			g_string_append_c(in->out, ',');
		g_string_append_printf(in->out, "{\"pid\":%d,\"name\":", (int)ih->pid);
		process_json_string(in->out, ih->name);
		g_string_append_printf(in->out, ",\"state\":\"%s\",\"node\":\"%s\",", ih->state,
				       mesh_uuid_to_string(&ih->node_id, id));
		if (ih->spare)
			g_string_append(in->out, "\"spare\":true,");
		if (ih->remote) {
			g_string_append(in->out, "\"transport\":\"p2p\",\"command\":");
			process_json_string(in->out, ih->remote);
			g_string_append_c(in->out, ',');
		}
		g_string_append_printf(in->out, "\"report\":%s}", ih->report);
		g_free(ih->name);
		g_free(ih->remote);
		g_free(ih->report);
	}
	g_string_append(in->out, "]}");
	char *json = g_string_free(in->out, FALSE);
	if (in->context)
		g_main_context_unref(in->context);
	g_free(in->hosts);
	g_free(in);
	return json;
}

char *mesh_inspect(Mesh *m, gint64 timeout_us)
{
	g_return_val_if_fail(m && timeout_us >= -1, NULL);
	Inspect *in = inspect_begin(m);
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	for (guint i = 0; i < in->n; i++)
		inspect_take(&in->hosts[i], deadline < 0 ? -1
							 : MAX(deadline - g_get_monotonic_time(), 0));
	return inspect_end(in);
}

/* Async: everything below runs on the callback's context. */

static void inspect_finish(Inspect *in)
{
	MeshInspectFunc callback = in->callback;
	gpointer user_data = in->user_data;
	GDestroyNotify notify = in->notify;

	if (in->deadline_source) {
		g_source_destroy(in->deadline_source);
		g_source_unref(in->deadline_source);
	}
	/* Freeing a receiver whose callback runs now is fine: nothing runs after it. */
	callback(inspect_end(in), user_data);
	if (notify)
		notify(user_data);
}

static void inspect_on_report(MeshOneshotReceiver *reply, gpointer data)
{
	InspectHost *ih = data;
	Inspect *in = ih->in;

	inspect_take(ih, 0);
	if (in->n_left == 0)
		inspect_finish(in);
}

static gboolean inspect_on_deadline(gpointer data)
{
	inspect_finish(data);
	return G_SOURCE_REMOVE;
}

static gboolean inspect_start(gpointer data)
{
	Inspect *in = data;

	if (in->n_left == 0) {
		inspect_finish(in);
		return G_SOURCE_REMOVE;
	}
	for (guint i = 0; i < in->n; i++)
		if (in->hosts[i].reply)
			mesh_oneshot_receiver_set_callback(in->hosts[i].reply, in->context,
							   inspect_on_report, &in->hosts[i], NULL);
	if (in->deadline >= 0) {
		gint64 left_us = MAX(in->deadline - g_get_monotonic_time(), 0);
		in->deadline_source =
			g_timeout_source_new((guint)MIN((left_us + 999) / 1000, G_MAXUINT));
		g_source_set_name(in->deadline_source, "mesh_inspect_async deadline");
		g_source_set_callback(in->deadline_source, inspect_on_deadline, in, NULL);
		g_source_attach(in->deadline_source, in->context);
	}
	return G_SOURCE_REMOVE;
}

void mesh_inspect_async(Mesh *m, gint64 timeout_us, GMainContext *context,
			MeshInspectFunc callback, gpointer user_data, GDestroyNotify notify)
{
	if (!m || timeout_us < -1 || !callback) {
		if (notify)
			notify(user_data);
		g_return_if_fail(m && timeout_us >= -1 && callback);
	}
	Inspect *in = inspect_begin(m);
	in->deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	in->context = g_main_context_ref(context ? context : g_main_context_default());
	in->callback = callback;
	in->user_data = user_data;
	in->notify = notify;
	/* The rest on the context, never inside this call. */
	GSource *start = g_idle_source_new();
	g_source_set_name(start, "mesh_inspect_async");
	g_source_set_priority(start, G_PRIORITY_DEFAULT);
	g_source_set_callback(start, inspect_start, in, NULL);
	g_source_attach(start, in->context);
	g_source_unref(start);
}

/* Listening. */

static void on_client(MeshPort *port, gpointer data)
{
	Listening *l = data;
	/* The client's port now feeds the listener's receiver. */
	MeshSender *s = mesh_sender_clone(l->sender);
	mesh_port_bridge(port, mesh_sender_into_port(s));
}

static gboolean check_private_dir(const char *path, GError **error)
{
	char *dir = g_path_get_dirname(path);
	struct stat st;
	gboolean ok = FALSE;

	if (stat(dir, &st) < 0) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED, "%s: %s", dir,
			    g_strerror(errno));
	} else if (st.st_uid != geteuid()) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INSECURE,
			    "refusing to listen in %s: it belongs to uid %u, not to us (uid %u)", dir,
			    (unsigned)st.st_uid, (unsigned)geteuid());
	} else if (st.st_mode & 022) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INSECURE,
			    "refusing to listen in %s: other users can write to it (mode %04o)", dir,
			    (unsigned)(st.st_mode & 07777));
	} else {
		ok = TRUE;
	}
	g_free(dir);
	return ok;
}

/*
 * A socket file at @path: removed if stale (nobody listens: connect is
 * refused), an "address in use" error if a server listens there. The probe
 * is a client that connects and leaves at once.
 */
static gboolean remove_stale_socket(const char *path, GError **error)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct stat st, again;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return TRUE;
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED, "%s: %s", path,
			    g_strerror(errno));
		return FALSE;
	}
	if (!S_ISSOCK(st.st_mode)) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "%s exists and is not a socket", path);
		return FALSE;
	}
	if (strlen(path) >= sizeof(addr.sun_path))
		return TRUE; /* the listen call says why */
	strcpy(addr.sun_path, path);
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe < 0) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED, "socket: %s",
			    g_strerror(errno));
		return FALSE;
	}
	int r = connect(probe, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? errno : 0;
	close(probe);
	if (r == ENOENT)
		return TRUE; /* gone meanwhile */
	if (r == 0 || r == EAGAIN || r == EINPROGRESS) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_ADDRESS_IN_USE,
			    "cannot listen on %s: a server listens there", path);
		return FALSE;
	}
	if (r != ECONNREFUSED) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "cannot tell whether a server listens on %s: %s", path, g_strerror(r));
		return FALSE;
	}
	/* Stale: remove it, unless another server replaced it meanwhile. */
	if (lstat(path, &again) == 0 && (again.st_dev != st.st_dev || again.st_ino != st.st_ino)) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_ADDRESS_IN_USE,
			    "cannot listen on %s: another socket took its place", path);
		return FALSE;
	}
	unlink(path);
	return TRUE;
}

typedef struct {
	Mesh *mesh;
	const char *path;
	gboolean allow_other_users;
	MeshReceiver *receiver;
	GError *error;
} ListenReq;

static gboolean listen_cb(gpointer data)
{
	ListenReq *r = data;
	Mesh *m = r->mesh;

	g_mutex_lock(&m->lock);
	gboolean again = g_hash_table_contains(m->listening, r->path);
	g_mutex_unlock(&m->lock);
	if (again) {
		g_set_error(&r->error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_ADDRESS_IN_USE,
			    "this mesh already listens on %s", r->path);
		return G_SOURCE_REMOVE;
	}
	if (!check_private_dir(r->path, &r->error) || !remove_stale_socket(r->path, &r->error))
		return G_SOURCE_REMOVE;
	Listening *l = g_new0(Listening, 1);
	l->path = g_strdup(r->path);
	mesh_channel_new(NULL, &l->sender, &r->receiver);
	l->listener = mesh_unix_node_listen(m->unode, r->path, on_client, l, NULL, &r->error);
	if (!l->listener) {
		if (g_error_matches(r->error, MESH_ERROR, MESH_ERROR_ADDRESS_IN_USE)) {
			/* Another server bound the path since we looked. */
			r->error->domain = MESH_PROCESS_ERROR;
			r->error->code = MESH_PROCESS_ERROR_ADDRESS_IN_USE;
		}
		mesh_sender_free(l->sender);
		mesh_receiver_free(r->receiver);
		r->receiver = NULL;
		g_free(l->path);
		g_free(l);
		return G_SOURCE_REMOVE;
	}
	/*
	 * Connecting takes write permission on the socket file. Our private
	 * directory keeps others from replacing it before this chmod.
	 */
	chmod(r->path, r->allow_other_users ? 0666 : 0600);
	if (!r->allow_other_users)
		mesh_unix_listener_set_allowed_uid(l->listener, geteuid());
	g_mutex_lock(&m->lock);
	g_hash_table_insert(m->listening, l->path, l);
	g_mutex_unlock(&m->lock);
	return G_SOURCE_REMOVE;
}

gboolean mesh_listen(Mesh *m, const char *path, gboolean allow_other_users,
		     MeshReceiver **ret_receiver, GError **error)
{
	ListenReq r = {.mesh = m, .path = path, .allow_other_users = allow_other_users};
	g_return_val_if_fail(m && path && ret_receiver, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (is_shut_down(m, error))
		return FALSE;
	run_sync(m, listen_cb, &r);
	if (r.error) {
		g_propagate_error(error, r.error);
		return FALSE;
	}
	*ret_receiver = r.receiver;
	return TRUE;
}

static void listening_free(Listening *l)
{
	mesh_unix_listener_free(l->listener);
	mesh_sender_free(l->sender);
	g_free(l->path);
	g_free(l);
}

void mesh_unlisten(Mesh *m, const char *path)
{
	g_return_if_fail(m && path);
	g_mutex_lock(&m->lock);
	Listening *l = g_hash_table_lookup(m->listening, path);
	if (l)
		g_hash_table_remove(m->listening, path);
	g_mutex_unlock(&m->lock);
	if (l)
		listening_free(l);
}

/* Connecting, for a process outside the mesh. */

struct MeshConnection {
	MeshUnixNode *unode;
};

MeshConnection *mesh_connect(const char *path, gint64 timeout_us, MeshSender **ret_sender,
			     GError **error)
{
	MeshPort *port = NULL;
	g_return_val_if_fail(path && ret_sender, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	MeshUnixNode *u = mesh_unix_node_join_by_path(path, NULL, timeout_us, &port, error);
	if (!u)
		return NULL;
	MeshConnection *c = g_new0(MeshConnection, 1);
	c->unode = u;
	*ret_sender = mesh_sender_from_port(port, NULL);
	return c;
}

gboolean mesh_connection_shutdown(MeshConnection *c, gint64 timeout_us)
{
	g_return_val_if_fail(timeout_us >= -1, FALSE);
	if (!c)
		return TRUE;
	MeshNode *node = mesh_node_ref(mesh_unix_node_get_node(c->unode));
	gboolean clean = mesh_unix_node_shutdown(c->unode, timeout_us);
	mesh_unix_node_free(c->unode);
	mesh_node_unref(node);
	g_free(c);
	return clean;
}

/* Shutdown. */

static gboolean close_requests_cb(gpointer data)
{
	Mesh *m = data;
	GPtrArray *senders = g_ptr_array_new_with_free_func((GDestroyNotify)mesh_sender_free);
	g_mutex_lock(&m->requests_lock);
	g_mutex_lock(&m->lock);
	GList *hosts = g_hash_table_get_values(m->hosts);
	for (GList *l = hosts; l; l = l->next) {
		Host *h = l->data;
		if (h->requests) /* the host sees its request channel close and exits */
			g_ptr_array_add(senders, g_steal_pointer(&h->requests));
		h->state = MESH_HOST_STATE_STOPPING;
		/* A spare sees its bootstrap channel close and exits. */
		h->pool = NULL;
		if (h->spare_boot)
			g_ptr_array_add(senders, g_steal_pointer(&h->spare_boot));
		if (h->spare_requests)
			g_ptr_array_add(senders, g_steal_pointer(&h->spare_requests));
	}
	g_mutex_unlock(&m->lock);
	g_mutex_unlock(&m->requests_lock);
	g_list_free(hosts);
	/* The closes are sends, which may wait: no lock held. */
	g_ptr_array_unref(senders);
	return G_SOURCE_REMOVE;
}

/* Ends a blocking iteration at a deadline (its ready time); fires once. */
static gboolean deadline_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
	g_source_set_ready_time(source, -1);
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs deadline_funcs = {
	.dispatch = deadline_dispatch,
};

/*
 * Acquires the caller's context of @m if this thread may iterate it for a
 * blocking wait: it runs it already (a call inside its dispatch), or nobody
 * runs it now and it is this thread's: the thread that made the mesh, the
 * one that pushed it as its thread default, or the main thread for the
 * global default context (as libmeshremote's context-io.c decides). Another
 * thread must not take it: the thread that is about to run it would wait in
 * g_main_context_acquire() for as long as our iteration blocks.
 */
static gboolean context_acquire_if_ours(Mesh *m)
{
	if (g_main_context_is_owner(m->context))
		return g_main_context_acquire(m->context);
	long self = syscall(SYS_gettid);
	GMainContext *own = g_main_context_get_thread_default();
	gboolean ours = self == m->creator ||
			(own ? own == m->context
			     : m->context == g_main_context_default() && self == (long)getpid());
	return ours && g_main_context_acquire(m->context);
}

/*
 * Waits until every host is gone (host_exited_cb runs on the context) or
 * @deadline. On a caller's context that this thread runs, or that is this
 * thread's and nobody runs now, iterate it here: nobody else would.
 * Otherwise its owner, or the coordinator's thread, does.
 */
static gboolean wait_hosts(Mesh *m, gint64 deadline, gboolean interruptible)
{
	GSource *timer = NULL;
	gboolean expired = FALSE;

	g_mutex_lock(&m->lock);
	/* mesh_free() during mesh_shutdown_async() ends the first wait (hurry). */
	while (g_hash_table_size(m->hosts) > 0 && !expired && !(interruptible && m->hurry)) {
		if (!m->thread && context_acquire_if_ours(m)) {
			g_mutex_unlock(&m->lock);
			if (deadline >= 0 && !timer) {
				timer = g_source_new(&deadline_funcs, sizeof(GSource));
				g_source_set_ready_time(timer, deadline);
				g_source_attach(timer, m->context);
			}
			g_main_context_iteration(m->context, TRUE);
			g_main_context_release(m->context);
			g_mutex_lock(&m->lock);
			expired = deadline >= 0 && g_get_monotonic_time() >= deadline;
		} else if (deadline < 0) {
			g_cond_wait(&m->cond, &m->lock);
		} else {
			expired = !g_cond_wait_until(&m->cond, &m->lock, deadline);
		}
	}
	gboolean all = g_hash_table_size(m->hosts) == 0;
	g_mutex_unlock(&m->lock);
	if (timer) {
		g_source_destroy(timer);
		g_source_unref(timer);
	}
	return all;
}

static gboolean kill_hosts_cb(gpointer data)
{
	Mesh *m = data;
	g_mutex_lock(&m->lock);
	GList *hosts = g_hash_table_get_values(m->hosts);
	for (GList *l = hosts; l; l = l->next) {
		Host *h = l->data;
		char pid[16];
		g_snprintf(pid, sizeof(pid), "%d", (int)h->pid);
		debug_log(LOG_FIELDS("MESH_MESH", m->name, "MESH_HOST", h->name, "MESH_PID", pid),
			  "mesh %s: killing host %s (pid %d) at the shutdown deadline", m->name,
			  h->name, (int)h->pid);
		h->killed = TRUE;
		h->state = MESH_HOST_STATE_STOPPING;
		pal_child_kill(h->child, SIGKILL);
	}
	g_mutex_unlock(&m->lock);
	g_list_free(hosts);
	return G_SOURCE_REMOVE;
}

/*
 * The start of a shutdown: no more launches, every host's request channel
 * closed. FALSE if it began before.
 */
static gboolean shutdown_begin(Mesh *m)
{
	g_mutex_lock(&m->lock);
	gboolean again = m->shut_down;
	m->shut_down = TRUE;
	g_mutex_unlock(&m->lock);
	if (again)
		return FALSE;
	run_sync(m, close_requests_cb, m);
	return TRUE;
}

/* The rest: wait for the hosts, kill them at @deadline, shut the node down. */
static gboolean shutdown_finish(Mesh *m, gint64 deadline, GError **error)
{
	gboolean clean = wait_hosts(m, deadline, TRUE);
	if (!clean) {
		run_sync(m, kill_hosts_cb, m);
		wait_hosts(m, g_get_monotonic_time() + 10 * G_USEC_PER_SEC, FALSE);
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_TIMED_OUT,
			    "hosts still running at the shutdown deadline were killed");
	}
	g_mutex_lock(&m->lock);
	GList *listening = g_hash_table_get_values(m->listening);
	g_hash_table_remove_all(m->listening);
	g_mutex_unlock(&m->lock);
	g_list_free_full(listening, (GDestroyNotify)listening_free);
	mesh_unix_node_shutdown(m->unode, 2 * G_USEC_PER_SEC);
	return clean;
}

gboolean mesh_shutdown(Mesh *m, gint64 deadline_us, GError **error)
{
	gint64 deadline = deadline_us < 0 ? -1 : g_get_monotonic_time() + deadline_us;

	g_return_val_if_fail(m, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(deadline_us, G_STRFUNC, error))
		return FALSE; /* nothing done */
	if (!shutdown_begin(m))
		return TRUE;
	return shutdown_finish(m, deadline, error);
}

typedef struct {
	Mesh *mesh;
	gint64 deadline;
	GMainContext *context;
	Pending *done; /* the callback, posted at the end */
} ShutdownJob;

/*
 * mesh_shutdown_async()'s thread: the blocking part of mesh_shutdown() on
 * a thread that is not the context's (so it waits for the context's owner,
 * never iterating the context itself), then the callback on its context.
 */
static gpointer shutdown_thread(gpointer data)
{
	ShutdownJob *job = data;
	Mesh *m = job->mesh;

	job->done->clean = shutdown_finish(m, job->deadline, &job->done->error);
	g_mutex_lock(&m->lock);
	post_locked(m, job->context, job->done);
	m->shutdown_done = TRUE;
	g_cond_broadcast(&m->cond);
	g_mutex_unlock(&m->lock);
	g_main_context_wakeup(m->context); /* a mesh_free() that iterates it */
	g_main_context_unref(job->context);
	g_free(job);
	return NULL;
}

void mesh_shutdown_async(Mesh *m, gint64 deadline_us, GMainContext *context,
			 MeshShutdownFunc func, gpointer user_data, GDestroyNotify notify)
{
	if (!m || deadline_us < -1) {
		if (notify)
			notify(user_data); /* taken in all cases */
		g_return_if_fail(m);
		g_return_if_fail(deadline_us >= -1);
	}
	Pending *done = g_new0(Pending, 1);
	done->done = func;
	done->data = user_data;
	done->notify = notify;
	if (!context)
		context = g_main_context_default();
	if (!shutdown_begin(m)) {
		done->clean = TRUE;
		g_mutex_lock(&m->lock);
		post_locked(m, context, done);
		g_mutex_unlock(&m->lock);
		return;
	}
	ShutdownJob *job = g_new0(ShutdownJob, 1);
	job->mesh = m;
	job->deadline = deadline_us < 0 ? -1 : g_get_monotonic_time() + deadline_us;
	job->context = g_main_context_ref(context);
	job->done = done;
	/* Locked: a mesh_free() in the callback must find the thread to join. */
	g_mutex_lock(&m->lock);
	m->shutdown_thread = g_thread_new("mesh-shutdown", shutdown_thread, job);
	g_mutex_unlock(&m->lock);
}

/*
 * mesh_free() during mesh_shutdown_async(): hurry its wait (the hosts are
 * killed at once) and wait for its end, iterating a caller's context if this
 * thread may (it needs the context: the hosts' exits, the node's I/O).
 */
static void finish_async_shutdown(Mesh *m)
{
	g_mutex_lock(&m->lock);
	GThread *t = m->shutdown_thread;
	m->shutdown_thread = NULL;
	m->hurry = TRUE;
	g_cond_broadcast(&m->cond);
	while (t && !m->shutdown_done) {
		if (!m->thread && context_acquire_if_ours(m)) {
			g_mutex_unlock(&m->lock);
			g_main_context_iteration(m->context, TRUE);
			g_main_context_release(m->context);
			g_mutex_lock(&m->lock);
		} else {
			g_cond_wait(&m->cond, &m->lock);
		}
	}
	g_mutex_unlock(&m->lock);
	if (t)
		g_thread_join(t);
}

static gboolean quit_cb(gpointer data)
{
	g_main_loop_quit(data);
	return G_SOURCE_REMOVE;
}

static gboolean drop_hosts_cb(gpointer data)
{
	Mesh *m = data;
	g_mutex_lock(&m->lock);
	GList *hosts = g_hash_table_get_values(m->hosts);
	g_hash_table_steal_all(m->hosts);
	g_mutex_unlock(&m->lock);
	g_list_free_full(hosts, (GDestroyNotify)host_free); /* unlocked, as in host_exited_cb */
	return G_SOURCE_REMOVE;
}

void mesh_free(Mesh *m)
{
	if (!m)
		return;
	g_mutex_lock(&m->lock);
	m->freeing = TRUE; /* no callback runs from here on */
	g_mutex_unlock(&m->lock);
	finish_async_shutdown(m);
	mesh_shutdown(m, 0, NULL); /* at once, unless it was shut down already */
	run_sync(m, drop_hosts_cb, m);
	g_mutex_lock(&m->lock);
	if (m->refill) {
		g_source_destroy(m->refill);
		g_source_unref(g_steal_pointer(&m->refill));
	}
	g_mutex_unlock(&m->lock);
	mesh_unix_node_free(m->unode);
	mesh_node_unref(m->node);
	if (m->thread) {
		g_main_context_invoke(m->context, quit_cb, m->loop);
		g_thread_join(m->thread);
		g_main_loop_unref(m->loop);
	}
	/* Last: hosts still running when it ends get their parent-death signal. */
	if (m->spawner) {
		g_async_queue_push(m->spawn_jobs, &spawner_quit);
		g_thread_join(m->spawner);
		g_async_queue_unref(m->spawn_jobs);
	}
	drop_pending(m);
	g_ptr_array_free(m->pending, TRUE);
	g_main_context_unref(m->context);
	g_hash_table_destroy(m->hosts);
	g_ptr_array_free(m->pools, TRUE);
	g_hash_table_destroy(m->listening);
	for (guint i = 0; i < G_N_ELEMENTS(m->gone); i++)
		g_free(m->gone[i].text);
	g_mutex_clear(&m->lock);
	g_mutex_clear(&m->requests_lock);
	g_cond_clear(&m->cond);
	g_free(m->argv0);
	g_free(m->name);
	g_free(m);
}
