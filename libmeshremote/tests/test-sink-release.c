/* SPDX-License-Identifier: MIT */
/*
 * A remote node's sink (its transport's handle) is released exactly once,
 * and never while a send uses it, whichever way a send's end interleaves
 * with the node's failure.
 *
 * A send ends without the remote node's lock (remote_send_done() in
 * core/node.c): the count of sends drops, then the release flag is read;
 * node_fail_remote() sets the flag, then reads the count; an exchange under
 * the lock decides who releases. This program builds its own node.c with
 * MESH_REMOTE_SINK_STEPS (core/sink-steps-private.h): before each of those
 * steps node.c calls sink_step() below, where the thread stops if the test
 * put a gate there, until the test opens it. Each test below forces one
 * interleaving that way (threads that wait for each other, no timing).
 *
 * The fake transport counts its releases and the sends running at each; a
 * release frees its connection, which a send reads after its own gate: a
 * send after the release is a use after free under ASan, as well as a count.
 */
#include <check.h>
#include <string.h>

#include "remote-private.h"
#include "sink-steps-private.h"

/* A step of the fake transport: inside send(), before it uses its connection. */
#define STEP_IN_SEND 16

typedef struct Actor Actor;

/* A thread that does one thing (a send, a failure), stopping at its gate. */
struct Actor {
	const char *name;
	void (*run)(Actor *a);
	MeshPort *port; /* a sender's */
	GThread *thread;
	/* Under world.lock: */
	int gate;    /* the step it stops at, -1 none */
	int waiting; /* the step it is stopped at, -1 none */
	guint seen;  /* the steps it reached (bits) */
	gboolean done;
};

#define CONN_MAGIC 0x5eed5eedu

typedef struct {
	guint magic;
	guint pad[7]; /* magic away from what an allocator writes into freed memory */
} FakeConn;

static struct {
	GMutex lock;
	GCond cond;
	MeshNode *node;
	MeshRemoteNode *remote;
	MeshNodeId remote_id;
	MeshPort *ports[2]; /* peered with ports on the remote node */
	/* The fake transport, under lock: */
	FakeConn *conn; /* freed by the first release (left dangling on purpose) */
	guint sends;
	guint in_send;          /* sends running */
	guint bad_reads;        /* a send that found its connection released */
	guint releases;
	guint released_in_send; /* releases while a send ran */
	guint sends_after_release;
	Actor *released_by; /* the actor whose thread released (NULL: another) */
} world;

static GPrivate current_actor;

/* The two senders (on world.ports[0] and [1]) and the failure, made by setup(). */
static Actor senders[2], failure;

/* The calling thread reached @step: stops there while its gate says so. */
static void actor_step(int step)
{
	Actor *a = g_private_get(&current_actor);
	if (!a)
		return;
	g_mutex_lock(&world.lock);
	a->seen |= 1u << step;
	while (a->gate == step) {
		a->waiting = step;
		g_cond_broadcast(&world.cond);
		g_cond_wait(&world.cond, &world.lock);
	}
	a->waiting = -1;
	g_cond_broadcast(&world.cond);
	g_mutex_unlock(&world.lock);
}

void sink_step(MeshRemoteNode *remote, SinkStep step)
{
	if (remote == world.remote)
		actor_step((int)step);
}

static void fake_send(void *user_data, const struct iovec *iov, size_t n_iov,
		      const MeshOsHandle *handles, size_t n_handles)
{
	ck_assert_ptr_eq(user_data, &world);
	g_mutex_lock(&world.lock);
	world.sends++;
	world.in_send++;
	if (world.releases)
		world.sends_after_release++;
	FakeConn *conn = world.conn;
	g_mutex_unlock(&world.lock);

	actor_step(STEP_IN_SEND);
	/* The transport writes to its connection: freed if released meanwhile. */
	gboolean good = conn->magic == CONN_MAGIC;

	g_mutex_lock(&world.lock);
	if (!good)
		world.bad_reads++;
	world.in_send--;
	g_mutex_unlock(&world.lock);
}

static void fake_destroy(void *user_data)
{
	ck_assert_ptr_eq(user_data, &world);
	g_mutex_lock(&world.lock);
	world.releases++;
	if (world.in_send)
		world.released_in_send++;
	world.released_by = g_private_get(&current_actor);
	if (world.releases == 1) {
		world.conn->magic = 0;
		g_free(world.conn);
	}
	g_mutex_unlock(&world.lock);
}

static const MeshEventSink fake_sink = {
	.version = MESH_EVENT_SINK_VERSION,
	.send = fake_send,
	.destroy = fake_destroy,
};

static void run_send(Actor *a)
{
	ck_assert(port_send(a->port, mesh_message_new("x", 1), FALSE));
}

static void run_fail(Actor *a)
{
	mesh_remote_node_fail(world.remote, "test: connection lost");
}

static gpointer actor_thread(gpointer data)
{
	Actor *a = data;

	g_private_set(&current_actor, a);
	a->run(a);
	g_private_set(&current_actor, NULL);
	g_mutex_lock(&world.lock);
	a->done = TRUE;
	g_cond_broadcast(&world.cond);
	g_mutex_unlock(&world.lock);
	return NULL;
}

/* Starts @a, which stops at @gate (-1: none), and waits until it is there. */
static void actor_start(Actor *a, int gate)
{
	a->gate = gate;
	a->waiting = -1;
	a->thread = g_thread_new(a->name, actor_thread, a);
	if (gate < 0)
		return;
	g_mutex_lock(&world.lock);
	while (a->waiting != gate) {
		ck_assert_msg(!a->done, "%s ended without reaching step %d", a->name, gate);
		g_cond_wait(&world.cond, &world.lock);
	}
	g_mutex_unlock(&world.lock);
}

/* Lets @a go on from its gate (it stops nowhere else). */
static void actor_open(Actor *a)
{
	g_mutex_lock(&world.lock);
	a->gate = -1;
	g_cond_broadcast(&world.cond);
	g_mutex_unlock(&world.lock);
}

/* Waits until @a reached @step or ended; returns whether it reached it. */
static gboolean actor_wait_step_or_end(Actor *a, int step)
{
	g_mutex_lock(&world.lock);
	while (!(a->seen & (1u << step)) && !a->done)
		g_cond_wait(&world.cond, &world.lock);
	gboolean reached = (a->seen & (1u << step)) != 0;
	g_mutex_unlock(&world.lock);
	return reached;
}

static void actor_join(Actor *a)
{
	g_thread_join(a->thread);
	a->thread = NULL;
}

/* Opens @a's gate and waits for it to end. */
static void actor_finish(Actor *a)
{
	actor_open(a);
	actor_join(a);
}

static gboolean actor_seen(Actor *a, int step)
{
	g_mutex_lock(&world.lock);
	gboolean seen = (a->seen & (1u << step)) != 0;
	g_mutex_unlock(&world.lock);
	return seen;
}

static guint releases(void)
{
	g_mutex_lock(&world.lock);
	guint n = world.releases;
	g_mutex_unlock(&world.lock);
	return n;
}

/* A node, a connected remote node with the fake transport, two ports peered there. */
static void setup(void)
{
	world.node = mesh_node_new();
	mesh_uuid_generate(&world.remote_id);
	world.remote = mesh_node_add_remote(world.node, &world.remote_id);
	world.conn = g_new0(FakeConn, 1);
	world.conn->magic = CONN_MAGIC;
	world.sends = world.in_send = world.bad_reads = 0;
	world.releases = world.released_in_send = world.sends_after_release = 0;
	world.released_by = NULL;
	ck_assert(mesh_remote_node_connect(world.remote, &fake_sink, &world));
	for (guint i = 0; i < G_N_ELEMENTS(world.ports); i++) {
		MeshPortId id, peer;
		mesh_uuid_generate(&id);
		mesh_uuid_generate(&peer);
		world.ports[i] = mesh_node_add_port(world.node, &id, &world.remote_id, &peer);
		ck_assert_ptr_nonnull(world.ports[i]);
		senders[i] = (Actor){.name = i ? "second send" : "first send", .run = run_send,
				     .port = world.ports[i]};
	}
	failure = (Actor){.name = "failure", .run = run_fail};
}

/*
 * Once every actor ended: the sink was released once, by @by (NULL: a
 * thread that is no actor), while no send ran, and no send came after;
 * dropping everything releases nothing more.
 */
static void expect_released_once_by(Actor *by, guint sends)
{
	g_mutex_lock(&world.lock);
	ck_assert_uint_eq(world.sends, sends);
	ck_assert_uint_eq(world.in_send, 0);
	ck_assert_uint_eq(world.releases, 1);
	ck_assert_uint_eq(world.released_in_send, 0);
	ck_assert_uint_eq(world.sends_after_release, 0);
	ck_assert_uint_eq(world.bad_reads, 0);
	ck_assert_msg(world.released_by == by, "released by %s, expected %s",
		      world.released_by ? world.released_by->name : "no actor",
		      by ? by->name : "no actor");
	g_mutex_unlock(&world.lock);

	for (guint i = 0; i < G_N_ELEMENTS(world.ports); i++)
		g_clear_pointer(&world.ports[i], mesh_port_close);
	g_clear_pointer(&world.remote, mesh_remote_node_unref);
	g_clear_pointer(&world.node, mesh_node_unref);
	ck_assert_uint_eq(releases(), 1);
}

/* The failure while the send is in the transport's send(): the send releases. */
START_TEST(test_fail_during_send)
{
	Actor *send = &senders[0];

	actor_start(send, STEP_IN_SEND);
	run_fail(NULL);
	ck_assert_uint_eq(releases(), 0);
	actor_finish(send);
	ck_assert(actor_seen(send, SINK_STEP_SEND_LOCK));
	expect_released_once_by(send, 1);
}
END_TEST

/* The failure after send() returned, before the count drops: the send releases. */
START_TEST(test_fail_before_decrement)
{
	Actor *send = &senders[0];

	actor_start(send, SINK_STEP_SEND_DECREMENT);
	run_fail(NULL);
	ck_assert_uint_eq(releases(), 0);
	actor_finish(send);
	expect_released_once_by(send, 1);
}
END_TEST

/* The failure after the count dropped to 0, before the send reads the flag: the failure releases. */
START_TEST(test_fail_between_decrement_and_flag)
{
	Actor *send = &senders[0];

	actor_start(send, SINK_STEP_SEND_READ_FLAG);
	run_fail(NULL);
	ck_assert_uint_eq(releases(), 1);
	actor_finish(send);
	ck_assert(!actor_seen(send, SINK_STEP_SEND_LOCK)); /* the flag was taken back */
	expect_released_once_by(NULL, 1);
}
END_TEST

/* The failure after the send ended: the failure releases. */
START_TEST(test_fail_after_send)
{
	Actor *send = &senders[0];

	actor_start(send, -1);
	actor_join(send);
	ck_assert(actor_seen(send, SINK_STEP_SEND_READ_FLAG));
	ck_assert(!actor_seen(send, SINK_STEP_SEND_LOCK));
	ck_assert_uint_eq(releases(), 0);
	run_fail(NULL);
	expect_released_once_by(NULL, 1);
}
END_TEST

/*
 * The send ends entirely while the failure (holding the lock) has not set
 * the flag yet: the send sees no flag, the failure sees no send: it releases.
 */
START_TEST(test_send_ends_before_fail_sets_flag)
{
	Actor *send = &senders[0];
	Actor *fail = &failure;

	actor_start(send, STEP_IN_SEND);
	actor_start(fail, SINK_STEP_FAIL_SET_FLAG);
	actor_finish(send);
	ck_assert(!actor_seen(send, SINK_STEP_SEND_LOCK));
	ck_assert_uint_eq(releases(), 0);
	actor_finish(fail);
	expect_released_once_by(fail, 1);
}
END_TEST

/*
 * The send ends between the failure's flag and its read of the count: both
 * see each other; the send waits for the lock, the failure's exchange wins.
 */
START_TEST(test_send_ends_between_fail_flag_and_count)
{
	Actor *send = &senders[0];
	Actor *fail = &failure;

	actor_start(send, STEP_IN_SEND);
	actor_start(fail, SINK_STEP_FAIL_READ_COUNT);
	actor_open(send);
	/* It saw the flag and goes for the lock, which the failure holds. */
	ck_assert(actor_wait_step_or_end(send, SINK_STEP_SEND_LOCK));
	ck_assert_uint_eq(releases(), 0);
	actor_finish(fail);
	actor_join(send);
	expect_released_once_by(fail, 1);
}
END_TEST

/*
 * Two sends: the first drops the count to 0 and stops before it reads the
 * flag; the second starts (the count is 1 again) and is in send() when the
 * node fails (the failure leaves the release to the sends). The first then
 * sees the flag, but a send still runs: the second must release, after it.
 */
START_TEST(test_send_starts_after_last_decrement)
{
	Actor *first = &senders[0];
	Actor *second = &senders[1];

	actor_start(first, SINK_STEP_SEND_READ_FLAG);
	actor_start(second, STEP_IN_SEND);
	run_fail(NULL);
	ck_assert_uint_eq(releases(), 0);
	actor_finish(first);
	g_mutex_lock(&world.lock);
	ck_assert_uint_eq(world.released_in_send, 0);
	g_mutex_unlock(&world.lock);
	ck_assert_uint_eq(releases(), 0);
	actor_finish(second);
	expect_released_once_by(second, 2);
}
END_TEST

/*
 * Two sends: the first drops the count to 0 and stops before it reads the
 * flag; the second starts (the count is 1 again), is in send() when the node
 * fails, and ends first: it releases; the first must not release again.
 */
START_TEST(test_send_started_after_last_decrement_ends_first)
{
	Actor *first = &senders[0];
	Actor *second = &senders[1];

	actor_start(first, SINK_STEP_SEND_READ_FLAG);
	actor_start(second, STEP_IN_SEND);
	run_fail(NULL);
	actor_finish(second);
	ck_assert_uint_eq(releases(), 1);
	actor_finish(first);
	expect_released_once_by(second, 2);
}
END_TEST

/* Two sends in send() at the failure: the one that ends last releases. */
START_TEST(test_fail_during_two_sends)
{
	Actor *first = &senders[0];
	Actor *second = &senders[1];

	actor_start(first, STEP_IN_SEND);
	actor_start(second, STEP_IN_SEND);
	run_fail(NULL);
	actor_finish(second);
	ck_assert_uint_eq(releases(), 0);
	actor_finish(first);
	expect_released_once_by(first, 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sink-release");
	TCase *tc = tcase_create("interleavings");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_fail_during_send);
	tcase_add_test(tc, test_fail_before_decrement);
	tcase_add_test(tc, test_fail_between_decrement_and_flag);
	tcase_add_test(tc, test_fail_after_send);
	tcase_add_test(tc, test_send_ends_before_fail_sets_flag);
	tcase_add_test(tc, test_send_ends_between_fail_flag_and_count);
	tcase_add_test(tc, test_send_starts_after_last_decrement);
	tcase_add_test(tc, test_send_started_after_last_decrement_ends_first);
	tcase_add_test(tc, test_fail_during_two_sends);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
