/* SPDX-License-Identifier: MIT */
/*
 * The Unix node's I/O thread waits on an epoll set that mirrors GLib's poll
 * array (unix-io.c). These tests run the thread on a context of their own,
 * with sources they attach, to reach the moments the node's traffic only
 * meets by chance: an fd number that names a new file while GLib's array
 * stays the same, a registration that outlives its fd because another
 * process keeps the file, an edge-triggered eventfd that nobody reads, and
 * an fd that epoll refuses.
 */
#include <check.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "unix/unix-node-private.h"

#define WAIT_US (5 * G_USEC_PER_SEC)

typedef struct {
	GMainContext *context;
	UnixIo *io;
	gint iterations; /* atomic: prepares of the counting source */
} IoRig;

static gboolean counting_prepare(GSource *source, gint *timeout)
{
	IoRig *rig = *(IoRig **)(source + 1);
	g_atomic_int_inc(&rig->iterations);
	*timeout = -1;
	return FALSE;
}

static GSourceFuncs counting_funcs = {.prepare = counting_prepare};

static IoRig *io_rig_new(void)
{
	IoRig *rig = g_new0(IoRig, 1);
	rig->context = g_main_context_new();
	rig->io = unix_io_start(rig->context, FALSE);
	GSource *counting = g_source_new(&counting_funcs, sizeof(GSource) + sizeof(IoRig *));
	*(IoRig **)(counting + 1) = rig;
	g_source_attach(counting, rig->context);
	g_source_unref(counting);
	return rig;
}

static void io_rig_free(IoRig *rig)
{
	unix_io_disable_lending(rig->io);
	unix_io_stop(rig->io);
	g_main_context_unref(rig->context);
	g_free(rig);
}

/* Waits (the I/O thread runs) until *@flag reaches @value; FALSE after WAIT_US. */
static gboolean wait_for(gint *flag, gint value)
{
	gint64 end = g_get_monotonic_time() + WAIT_US;
	while (g_atomic_int_get(flag) < value) {
		if (g_get_monotonic_time() > end)
			return FALSE;
		g_usleep(1000);
	}
	return TRUE;
}

/* Runs @func(@data) on the I/O thread and waits for it. */
typedef struct {
	GSourceFunc func;
	gpointer data;
	gint done;
} Call;

static gboolean call_cb(gpointer data)
{
	Call *c = data;
	c->func(c->data);
	g_atomic_int_set(&c->done, 1);
	return G_SOURCE_REMOVE;
}

static void run_on_io(IoRig *rig, GSourceFunc func, gpointer data)
{
	Call c = {.func = func, .data = data};
	GSource *s = g_idle_source_new();
	g_source_set_callback(s, call_cb, &c, NULL);
	g_source_attach(s, rig->context);
	g_source_unref(s);
	ck_assert(wait_for(&c.done, 1));
}

/* A source on a pipe's read end: counts its dispatches and drains the pipe. */
typedef struct {
	int fd;
	gint fired; /* atomic */
	gboolean drain;
	GSource *source;
} Watch;

static gboolean watch_cb(gint fd, GIOCondition cond, gpointer data)
{
	Watch *w = data;
	char buf[64];
	if (w->drain)
		while (read(fd, buf, sizeof(buf)) > 0)
			;
	g_atomic_int_inc(&w->fired);
	return G_SOURCE_CONTINUE;
}

static void watch_attach(IoRig *rig, Watch *w, int fd, gboolean drain, gboolean note)
{
	w->fd = fd;
	w->drain = drain;
	w->source = g_unix_fd_source_new(fd, G_IO_IN);
	g_source_set_callback(w->source, G_SOURCE_FUNC(watch_cb), w, NULL);
	if (note)
		unix_io_fd_attached(rig->io, fd);
	g_source_attach(w->source, rig->context);
}

static void watch_detach(Watch *w)
{
	g_source_destroy(w->source);
	g_source_unref(w->source);
	w->source = NULL;
}

static void write_byte(int fd)
{
	ck_assert_int_eq(write(fd, "x", 1), 1);
}

static void write_count(int efd)
{
	guint64 one = 1;
	ck_assert_int_eq(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

/* Makes a pipe whose read end has the number @want (free, or closed for it). */
static void pipe_at(int p[2], int want)
{
	ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	if (p[0] != want) {
		ck_assert_int_eq(dup3(p[0], want, O_CLOEXEC), want);
		close(p[0]);
		p[0] = want;
	}
}

typedef struct {
	IoRig *rig;
	Watch *old_w, *new_w;
	int *p; /* the new pipe */
	int number;
	int keep; /* -1, or a copy of the old file kept alive ("the peer's") */
} Swap;

/*
 * On the I/O thread, between two polls: the old source goes, its fd is
 * closed, and a new file under the same number gets an identical source,
 * so GLib's array does not change.
 */
static gboolean swap_cb(gpointer data)
{
	Swap *sw = data;
	watch_detach(sw->old_w);
	close(sw->number);
	pipe_at(sw->p, sw->number);
	watch_attach(sw->rig, sw->new_w, sw->number, TRUE, TRUE);
	write_byte(sw->p[1]);
	return G_SOURCE_REMOVE;
}

START_TEST(test_fd_number_reused)
{
	/*
	 * Without unix_io_fd_attached(), the set keeps the old file's
	 * registration (the kernel dropped it when the file closed) and the
	 * new file's byte never wakes the thread.
	 */
	IoRig *rig = io_rig_new();
	Watch a = {0}, b = {0};
	int p1[2], p2[2];

	ck_assert_int_eq(pipe2(p1, O_CLOEXEC | O_NONBLOCK), 0);
	watch_attach(rig, &a, p1[0], TRUE, TRUE);
	write_byte(p1[1]);
	ck_assert(wait_for(&a.fired, 1));

	Swap sw = {.rig = rig, .old_w = &a, .new_w = &b, .p = p2, .number = p1[0], .keep = -1};
	run_on_io(rig, swap_cb, &sw);
	ck_assert_msg(wait_for(&b.fired, 1), "the new file under fd %d never woke the thread",
		      sw.number);
	write_byte(p2[1]);
	ck_assert(wait_for(&b.fired, 2));

	watch_detach(&b);
	close(p1[1]);
	unix_io_close_fd(rig->io, p2[0]);
	close(p2[1]);
	io_rig_free(rig);
}
END_TEST

typedef struct {
	Watch *w;
	int efd;
	Swap *swap; /* NULL: the number is not used again */
	IoRig *rig;
} Gone;

/* On the I/O thread: a ring's source goes and its eventfd is closed; the "peer" keeps the file. */
static gboolean gone_cb(gpointer data)
{
	Gone *g = data;
	watch_detach(g->w);
	unix_io_set_edge_fd(g->rig->io, g->efd, FALSE);
	if (g->swap) {
		close(g->efd);
		pipe_at(g->swap->p, g->efd);
		watch_attach(g->rig, g->swap->new_w, g->efd, TRUE, TRUE);
	} else {
		close(g->efd);
	}
	return G_SOURCE_REMOVE;
}

START_TEST(test_stale_registration)
{
	/*
	 * A ring's eventfd, edge-triggered, whose file the peer keeps after
	 * the connection ended here: the peer's later writes must not keep
	 * waking the thread (as 200 wake-ups would show), whether the number
	 * stays free (_i 0) or names a new file at once (_i 1, the
	 * registration's serial tells the two apart).
	 */
	IoRig *rig = io_rig_new();
	Watch ring = {0}, after = {0};
	int p[2] = {-1, -1};

	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(efd, 0);
	int peer = fcntl(efd, F_DUPFD_CLOEXEC, 100);
	ck_assert_int_ge(peer, 0);
	unix_io_set_edge_fd(rig->io, efd, TRUE);
	watch_attach(rig, &ring, efd, FALSE, TRUE);
	write_count(peer);
	ck_assert(wait_for(&ring.fired, 1));

	Swap sw = {.rig = rig, .new_w = &after, .p = p};
	Gone g = {.w = &ring, .efd = efd, .swap = _i ? &sw : NULL, .rig = rig};
	run_on_io(rig, gone_cb, &g);
	g_usleep(20000);
	gint before = g_atomic_int_get(&rig->iterations);
	for (int k = 0; k < 200; k++) {
		write_count(peer);
		g_usleep(500);
	}
	g_usleep(20000);
	gint woke = g_atomic_int_get(&rig->iterations) - before;
	ck_assert_msg(woke < 20, "200 writes of a dead ring's eventfd woke the thread %d times",
		      woke);
	gint fired = g_atomic_int_get(&ring.fired);
	ck_assert_int_eq(fired, 1);
	if (_i) {
		/* The new file under that number still works. */
		fired = g_atomic_int_get(&after.fired);
		ck_assert_int_eq(fired, 0);
		write_byte(p[1]);
		ck_assert(wait_for(&after.fired, 1));
		watch_detach(&after);
		unix_io_close_fd(rig->io, p[0]);
		close(p[1]);
	}
	close(peer);
	io_rig_free(rig);
}
END_TEST

START_TEST(test_edge_without_read)
{
	/*
	 * A ring's eventfd wakes the thread at each write although nobody
	 * reads it (the source does not, and the count is all there at the
	 * end); and unix_io_edge_polled() tells its check so.
	 */
	IoRig *rig = io_rig_new();
	Watch ring = {0};

	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(efd, 0);
	unix_io_set_edge_fd(rig->io, efd, TRUE);
	watch_attach(rig, &ring, efd, FALSE, TRUE);
	for (gint k = 1; k <= 5; k++) {
		write_count(efd);
		ck_assert_msg(wait_for(&ring.fired, k), "write %d did not wake the thread", k);
		g_usleep(5000);
		/* Once per write: level-triggered, the unread count would wake it again at once. */
		gint fired = g_atomic_int_get(&ring.fired);
		ck_assert_int_eq(fired, k);
	}
	guint64 count = 0;
	ck_assert_int_eq(read(efd, &count, sizeof(count)), (ssize_t)sizeof(count));
	ck_assert_int_eq(count, 5);
	watch_detach(&ring);
	unix_io_set_edge_fd(rig->io, efd, FALSE);
	unix_io_close_fd(rig->io, efd);
	io_rig_free(rig);
}
END_TEST

START_TEST(test_epoll_refuses)
{
	/*
	 * A source on a file epoll cannot wait on (a memfd: a regular file,
	 * always ready to poll()) is still dispatched, through a plain poll();
	 * once it goes, a pipe's source works as before.
	 */
	IoRig *rig = io_rig_new();
	Watch file = {0}, pipe_w = {0};
	int p[2];

	int mfd = memfd_create("test-unix-io", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	watch_attach(rig, &file, mfd, FALSE, TRUE);
	ck_assert_msg(wait_for(&file.fired, 3), "the memfd's source never ran");
	watch_detach(&file);
	unix_io_close_fd(rig->io, mfd);

	ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	watch_attach(rig, &pipe_w, p[0], TRUE, TRUE);
	g_usleep(20000);
	gint fired = g_atomic_int_get(&pipe_w.fired);
	ck_assert_int_eq(fired, 0);
	write_byte(p[1]);
	ck_assert(wait_for(&pipe_w.fired, 1));
	watch_detach(&pipe_w);
	unix_io_close_fd(rig->io, p[0]);
	close(p[1]);
	io_rig_free(rig);
}
END_TEST

static Suite *unix_io_suite(void)
{
	Suite *s = suite_create("unix-io");
	TCase *tc = tcase_create("epoll");
	tcase_add_test(tc, test_fd_number_reused);
	tcase_add_loop_test(tc, test_stale_registration, 0, 2);
	tcase_add_test(tc, test_edge_without_read);
	tcase_add_test(tc, test_epoll_refuses);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(unix_io_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
