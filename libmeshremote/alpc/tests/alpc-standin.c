/* SPDX-License-Identifier: MIT */
/*
 * TEST DOUBLE of NtAlpc* (see alpc-standin.h). Never linked into the library.
 *
 * Its own pipe wire (test-only, both ends are this file): every frame is
 *
 *   u32 kind        SI_CONNECT, SI_ACCEPT, SI_REJECT, SI_DATAGRAM,
 *                   SI_REQUEST, SI_REPLY
 *   u32 message_id  for SI_REQUEST/SI_REPLY: the request's id
 *   u32 data_len    <= SI_MAX_DATA
 *   u32 n_handles   <= SI_MAX_HANDLES
 *   u64 pid         the sender's process id (used by SI_CONNECT/SI_ACCEPT)
 *   u64 view_handle a section handle already duplicated into the receiver
 *                   (read-only), 0 for none
 *   u64 view_size
 *   u64 handles[n_handles]  already duplicated into the receiver
 *   u8  data[data_len]
 *
 * A port handle is an event (manual reset) that is signaled while the
 * port's queue is not empty: a waitable port.
 */
#include "alpc-standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SI_CONNECT = 1, SI_ACCEPT, SI_REJECT, SI_DATAGRAM, SI_REQUEST, SI_REPLY };

#define SI_MAX_DATA 0x10000u
#define SI_MAX_HANDLES 64u
#define SI_STATUS_MESSAGE_TOO_LONG ((NTSTATUS)0xC000002FL)

typedef struct {
	uint32_t kind, message_id, data_len, n_handles;
	uint64_t pid, view_handle, view_size;
} SiFrame;

typedef struct SiMsg {
	struct SiMsg *next;
	int type; /* MESH_LPC_* */
	ULONG message_id;
	void *context;
	DWORD pid;
	struct SiConn *conn; /* CONNECTION_REQUEST: the pending connection */
	uint32_t n_handles;
	HANDLE handles[SI_MAX_HANDLES];
	HANDLE view_section; /* received read-only section, 0 none */
	SIZE_T view_size;
	uint32_t data_len;
	uint8_t data[];
} SiMsg;

typedef enum { SI_SERVER, SI_CLIENT, SI_COMM } SiKind;

typedef struct SiPort {
	struct SiPort *next_port;
	SiKind kind;
	HANDLE event; /* the port handle callers see */
	SRWLOCK lock;
	SiMsg *head, *tail;
	SiMsg *last; /* the last message received, for handle queries */
	SIZE_T max_message;
	BOOL dead; /* closed: a server port's struct stays (readers may still
		    * push to it), its queue takes nothing more */
	/* SI_SERVER */
	WCHAR pipe_name[160];
	HANDLE first_instance;
	HANDLE name_claim; /* a named mutex: Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE */
	HANDLE stop;
	HANDLE listener;
	/* SI_CLIENT and SI_COMM: one connection */
	struct SiConn *conn;
} SiPort;

typedef struct SiConn {
	SiPort *queue_port; /* where incoming frames queue: server or client port */
	void *context;
	HANDLE pipe;
	HANDLE peer_process;
	HANDLE reader;
	SRWLOCK write_lock;
	volatile LONG closed;
	HANDLE stop; /* set by conn_close: I/O in progress gives up */
	struct SiConn *next_conn; /* the server's list */
	volatile LONG accepted;
	HANDLE decided; /* set by accept/reject */
	ULONGLONG deadline; /* a connect's answer: read by then (0: no limit) */
	BOOL timed_out;
} SiConn;

typedef struct SiSection {
	struct SiSection *next;
	HANDLE port;
	HANDLE mapping;
	SIZE_T size;
} SiSection;

typedef struct SiView {
	struct SiView *next;
	HANDLE port;
	void *base;
	SiSection *section; /* NULL for a received view */
} SiView;

static SRWLOCK si_lock = SRWLOCK_INIT;
static SiPort *si_ports;
static SiSection *si_sections;
static SiView *si_views;
static volatile LONG si_next_id;
static volatile LONG si_unclaimed;
/* alpc_standin_hold_connect(), under si_lock. */
static WCHAR si_hold_name[64];
static HANDLE si_hold_held, si_hold_release;

static SiPort *port_find(HANDLE h)
{
	SiPort *p;

	AcquireSRWLockShared(&si_lock);
	for (p = si_ports; p && p->event != h; p = p->next_port)
		;
	ReleaseSRWLockShared(&si_lock);
	return p;
}

static SiPort *port_new(SiKind kind, SIZE_T max_message)
{
	SiPort *p = calloc(1, sizeof(*p));

	p->kind = kind;
	p->event = CreateEventW(NULL, TRUE, FALSE, NULL);
	InitializeSRWLock(&p->lock);
	p->max_message = max_message ? max_message : 512 + sizeof(MeshPortMessage);
	AcquireSRWLockExclusive(&si_lock);
	p->next_port = si_ports;
	si_ports = p;
	ReleaseSRWLockExclusive(&si_lock);
	return p;
}

static void msg_free(SiMsg *m);

static void port_push(SiPort *p, SiMsg *m)
{
	AcquireSRWLockExclusive(&p->lock);
	if (p->dead) {
		ReleaseSRWLockExclusive(&p->lock);
		if (m->conn && (m->type & 0xff) == MESH_LPC_CONNECTION_REQUEST) {
			CloseHandle(m->conn->pipe); /* refused: the client sees the end */
			if (m->conn->peer_process)
				CloseHandle(m->conn->peer_process);
			CloseHandle(m->conn->decided);
			free(m->conn);
		}
		msg_free(m);
		return;
	}
	if (p->tail)
		p->tail->next = m;
	else
		p->head = m;
	p->tail = m;
	SetEvent(p->event);
	ReleaseSRWLockExclusive(&p->lock);
}

static void msg_free(SiMsg *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->n_handles; i++) {
		if (m->handles[i]) {
			CloseHandle(m->handles[i]);
			InterlockedDecrement(&si_unclaimed);
		}
	}
	if (m->view_section)
		CloseHandle(m->view_section);
	free(m);
}

/*
 * Reads or writes all of @buf; FALSE at the end of the pipe, when @stop is
 * set, or at @deadline (GetTickCount64(), 0: none; then *@timed_out).
 */
static BOOL io_all_until(HANDLE pipe, HANDLE stop, void *buf, DWORD len, BOOL write,
			 ULONGLONG deadline, BOOL *timed_out)
{
	OVERLAPPED ov = { 0 };
	BOOL ok = TRUE;

	ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
	while (ok && len) {
		DWORD done = 0;

		ResetEvent(ov.hEvent);
		ok = write ? WriteFile(pipe, buf, len, NULL, &ov) : ReadFile(pipe, buf, len, NULL, &ov);
		if (!ok && GetLastError() == ERROR_IO_PENDING) {
			HANDLE waits[2] = { ov.hEvent, stop };
			DWORD ms = INFINITE, r;

			ok = TRUE;
			if (deadline) {
				ULONGLONG now = GetTickCount64();

				ms = now >= deadline ? 0
				     : deadline - now > 0x7fffffffULL ? 0x7fffffffUL
									 : (DWORD)(deadline - now);
			}
			r = WaitForMultipleObjects(stop ? 2 : 1, waits, FALSE, ms);
			if (r == WAIT_TIMEOUT && timed_out)
				*timed_out = TRUE;
			if (r == WAIT_OBJECT_0 + 1 || r == WAIT_TIMEOUT) {
				CancelIoEx(pipe, &ov);
				GetOverlappedResult(pipe, &ov, &done, TRUE);
				ok = FALSE;
				break;
			}
		}
		if (ok)
			ok = GetOverlappedResult(pipe, &ov, &done, TRUE);
		if (ok && done == 0)
			ok = FALSE;
		buf = (uint8_t *)buf + done;
		len -= done;
	}
	CloseHandle(ov.hEvent);
	return ok;
}

static BOOL io_all(HANDLE pipe, HANDLE stop, void *buf, DWORD len, BOOL write)
{
	return io_all_until(pipe, stop, buf, len, write, 0, NULL);
}

static BOOL conn_write(SiConn *c, const SiFrame *f, const HANDLE *handles, const void *data)
{
	size_t n = sizeof(*f) + f->n_handles * 8 + f->data_len;
	uint8_t *buf = malloc(n);
	BOOL ok;

	memcpy(buf, f, sizeof(*f));
	for (uint32_t i = 0; i < f->n_handles; i++) {
		uint64_t v = (uint64_t)(uintptr_t)handles[i];

		memcpy(buf + sizeof(*f) + i * 8, &v, 8);
	}
	if (f->data_len)
		memcpy(buf + sizeof(*f) + f->n_handles * 8, data, f->data_len);
	AcquireSRWLockExclusive(&c->write_lock);
	ok = !c->closed && io_all(c->pipe, c->stop, buf, (DWORD)n, TRUE);
	ReleaseSRWLockExclusive(&c->write_lock);
	free(buf);
	return ok;
}

/* Reads one frame; NULL at the end of the pipe or on a frame over bounds. */
static SiMsg *conn_read(SiConn *c, SiFrame *f)
{
	SiMsg *m;

	if (!io_all_until(c->pipe, c->stop, f, sizeof(*f), FALSE, c->deadline, &c->timed_out))
		return NULL;
	if (f->data_len > SI_MAX_DATA || f->n_handles > SI_MAX_HANDLES)
		return NULL;
	m = calloc(1, sizeof(*m) + f->data_len);
	m->n_handles = f->n_handles;
	for (uint32_t i = 0; i < f->n_handles; i++) {
		uint64_t v;

		if (!io_all(c->pipe, c->stop, &v, 8, FALSE)) {
			m->n_handles = i;
			msg_free(m);
			return NULL;
		}
		m->handles[i] = (HANDLE)(uintptr_t)v;
		InterlockedIncrement(&si_unclaimed);
	}
	m->view_section = (HANDLE)(uintptr_t)f->view_handle;
	m->view_size = (SIZE_T)f->view_size;
	m->data_len = f->data_len;
	if (f->data_len && !io_all(c->pipe, c->stop, m->data, f->data_len, FALSE)) {
		msg_free(m);
		return NULL;
	}
	m->message_id = f->message_id;
	m->pid = (DWORD)f->pid;
	m->context = c->context;
	m->conn = c;
	return m;
}

static DWORD WINAPI reader_main(void *arg)
{
	SiConn *c = arg;
	SiFrame f;
	SiMsg *m;

	while ((m = conn_read(c, &f))) {
		switch (f.kind) {
		case SI_DATAGRAM:
			m->type = MESH_LPC_DATAGRAM;
			break;
		case SI_REQUEST:
			m->type = MESH_LPC_REQUEST | MESH_LPC_CONTINUATION_REQUIRED;
			break;
		case SI_REPLY:
			m->type = MESH_LPC_REPLY;
			break;
		default:
			msg_free(m);
			continue;
		}
		port_push(c->queue_port, m);
	}
	/* The other end went: PORT_CLOSED, with the connection's context. */
	m = calloc(1, sizeof(*m));
	m->type = MESH_LPC_PORT_CLOSED;
	m->context = c->context;
	m->message_id = (ULONG)InterlockedIncrement(&si_next_id);
	if (!c->closed)
		port_push(c->queue_port, m);
	else
		free(m);
	return 0;
}

static HANDLE make_instance(const WCHAR *name, BOOL first)
{
	return CreateNamedPipeW(name,
				PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED |
					(first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0),
				PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT,
				PIPE_UNLIMITED_INSTANCES, 1 << 20, 1 << 20, 0, NULL);
}

/* Server: each connected instance first sends SI_CONNECT; that becomes a
 * CONNECTION_REQUEST on the server port, answered by accept/reject. */
static DWORD WINAPI pending_main(void *arg)
{
	SiConn *c = arg;
	SiFrame f;
	SiMsg *m = conn_read(c, &f);

	if (!m || f.kind != SI_CONNECT) {
		msg_free(m);
		CloseHandle(c->pipe);
		free(c);
		return 0;
	}
	m->type = MESH_LPC_CONNECTION_REQUEST | MESH_LPC_CONTINUATION_REQUIRED;
	m->message_id = (ULONG)InterlockedIncrement(&si_next_id);
	c->peer_process = OpenProcess(PROCESS_DUP_HANDLE, FALSE, (DWORD)f.pid);
	port_push(c->queue_port, m);
	return 0;
}

static DWORD WINAPI listener_main(void *arg)
{
	SiPort *p = arg;
	HANDLE inst = p->first_instance;

	for (;;) {
		OVERLAPPED ov = { 0 };
		HANDLE waits[2];
		BOOL ok;

		if (inst == INVALID_HANDLE_VALUE)
			inst = make_instance(p->pipe_name, FALSE);
		if (inst == INVALID_HANDLE_VALUE)
			return 1;
		ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
		ok = ConnectNamedPipe(inst, &ov);
		if (!ok && GetLastError() == ERROR_PIPE_CONNECTED)
			ok = TRUE;
		else if (!ok && GetLastError() == ERROR_IO_PENDING) {
			waits[0] = p->stop;
			waits[1] = ov.hEvent;
			if (WaitForMultipleObjects(2, waits, FALSE, INFINITE) == WAIT_OBJECT_0) {
				CancelIoEx(inst, &ov);
				CloseHandle(ov.hEvent);
				CloseHandle(inst);
				return 0;
			}
			DWORD dummy;
			ok = GetOverlappedResult(inst, &ov, &dummy, FALSE);
		}
		CloseHandle(ov.hEvent);
		if (ok) {
			SiConn *c = calloc(1, sizeof(*c));

			c->queue_port = p;
			c->pipe = inst;
			c->stop = CreateEventW(NULL, TRUE, FALSE, NULL);
			InitializeSRWLock(&c->write_lock);
			c->decided = CreateEventW(NULL, TRUE, FALSE, NULL);
			CloseHandle(CreateThread(NULL, 0, pending_main, c, 0, NULL));
		} else {
			CloseHandle(inst);
		}
		inst = INVALID_HANDLE_VALUE;
	}
}

static void pipe_name(WCHAR *out, size_t n, const OBJECT_ATTRIBUTES *oa)
{
	char ns[64] = "default";
	DWORD len = GetEnvironmentVariableA("MESH_ALPC_STANDIN_NS", ns, sizeof(ns));
	int w;

	if (len == 0 || len >= sizeof(ns))
		strcpy(ns, "default");
	w = _snwprintf(out, n, L"\\\\.\\pipe\\mesh-alpc-standin-%hs-", ns);
	if (oa->ObjectName)
		_snwprintf(out + w, n - (size_t)w, L"%.*ls", (int)(oa->ObjectName->Length / 2),
			   oa->ObjectName->Buffer);
}

static BOOL root_ok(const OBJECT_ATTRIBUTES *oa)
{
	DWORD flags;

	return oa && oa->ObjectName && oa->RootDirectory &&
	       GetHandleInformation(oa->RootDirectory, &flags);
}

static NTSTATUS NTAPI si_create_port(HANDLE *port, OBJECT_ATTRIBUTES *oa,
				     MeshAlpcPortAttributes *attr)
{
	SiPort *p;
	WCHAR name[160];
	HANDLE inst;

	if (!root_ok(oa))
		return MESH_STATUS_INVALID_PARAMETER;
	pipe_name(name, 160, oa);
	WCHAR claim_name[200];
	HANDLE claim;

	_snwprintf(claim_name, 200, L"Local\\%ls", name + 9);
	claim = CreateMutexW(NULL, FALSE, claim_name);
	if (!claim)
		return MESH_STATUS_INVALID_PARAMETER;
	if (GetLastError() == ERROR_ALREADY_EXISTS) {
		CloseHandle(claim);
		return MESH_STATUS_OBJECT_NAME_COLLISION;
	}
	inst = make_instance(name, TRUE);
	if (inst == INVALID_HANDLE_VALUE) {
		CloseHandle(claim);
		return GetLastError() == ERROR_ACCESS_DENIED ? MESH_STATUS_OBJECT_NAME_COLLISION
							      : MESH_STATUS_INVALID_PARAMETER;
	}
	p = port_new(SI_SERVER, attr ? attr->MaxMessageLength : 0);
	p->name_claim = claim;
	wcscpy(p->pipe_name, name);
	p->first_instance = inst;
	p->stop = CreateEventW(NULL, TRUE, FALSE, NULL);
	p->listener = CreateThread(NULL, 0, listener_main, p, 0, NULL);
	*port = p->event;
	return MESH_STATUS_SUCCESS;
}

/* Whether a live server port claims the pipe name @name (si_create_port()). */
static BOOL name_claimed(const WCHAR *name)
{
	WCHAR claim_name[200];
	HANDLE claim;

	_snwprintf(claim_name, 200, L"Local\\%ls", name + 9);
	claim = OpenMutexW(SYNCHRONIZE, FALSE, claim_name);
	if (!claim)
		return FALSE;
	CloseHandle(claim);
	return TRUE;
}

static NTSTATUS NTAPI si_connect_port_ex(HANDLE *port, OBJECT_ATTRIBUTES *conn_oa,
					 OBJECT_ATTRIBUTES *client_oa,
					 MeshAlpcPortAttributes *attr, ULONG flags, void *server_sd,
					 MeshPortMessage *conn_msg, SIZE_T *buffer_len,
					 MeshAlpcMessageAttributes *out_attr,
					 MeshAlpcMessageAttributes *in_attr, LARGE_INTEGER *timeout)
{
	WCHAR name[160];
	HANDLE pipe;
	SiConn *c;
	SiFrame f = { 0 };
	SiMsg *m;
	SiPort *p;

	(void)client_oa;
	(void)flags;
	(void)server_sd;
	(void)buffer_len;
	(void)out_attr;
	(void)in_attr;
	if (!root_ok(conn_oa))
		return MESH_STATUS_INVALID_PARAMETER;
	pipe_name(name, 160, conn_oa);
	{
		HANDLE held = NULL, release = NULL;
		const UNICODE_STRING *us = conn_oa->ObjectName;

		AcquireSRWLockExclusive(&si_lock);
		if (si_hold_held && us->Length / 2 == wcslen(si_hold_name) &&
		    wcsncmp(us->Buffer, si_hold_name, us->Length / 2) == 0) {
			held = si_hold_held;
			release = si_hold_release;
			si_hold_held = si_hold_release = NULL;
		}
		ReleaseSRWLockExclusive(&si_lock);
		if (held) {
			SetEvent(held);
			WaitForSingleObject(release, INFINITE);
		}
	}
	/*
	 * Every instance busy: wait for the listener's next one. No instance
	 * at all while the port's name is claimed: the port exists, between
	 * two instances (its last one went with a refused connect before the
	 * listener made the next). Both end when the port is closed.
	 */
	for (ULONGLONG give_up = GetTickCount64() + 10000;;) {
		DWORD err;

		pipe = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
				   FILE_FLAG_OVERLAPPED, NULL);
		if (pipe != INVALID_HANDLE_VALUE)
			break;
		err = GetLastError();
		if (GetTickCount64() > give_up)
			return MESH_STATUS_OBJECT_NAME_NOT_FOUND;
		if (err == ERROR_PIPE_BUSY) {
			WaitNamedPipeW(name, 100);
		} else if (err == ERROR_FILE_NOT_FOUND && name_claimed(name)) {
			Sleep(10);
		} else {
			return MESH_STATUS_OBJECT_NAME_NOT_FOUND;
		}
	}
	c = calloc(1, sizeof(*c));
	c->pipe = pipe;
	c->stop = CreateEventW(NULL, TRUE, FALSE, NULL);
	InitializeSRWLock(&c->write_lock);
	/* A relative timeout (negative, in 100 ns) bounds the wait for the
	 * server's answer; then the request is withdrawn (the pipe closed). */
	if (timeout && timeout->QuadPart < 0)
		c->deadline = GetTickCount64() + (ULONGLONG)(-timeout->QuadPart / 10000) + 1;
	f.kind = SI_CONNECT;
	f.pid = GetCurrentProcessId();
	f.data_len = conn_msg ? (uint32_t)conn_msg->u1.s1.DataLength : 0;
	if (!conn_write(c, &f, NULL, conn_msg ? (void *)(conn_msg + 1) : NULL) ||
	    !(m = conn_read(c, &f))) {
		BOOL timed_out = c->timed_out;

		CloseHandle(pipe);
		CloseHandle(c->stop);
		free(c);
		return timed_out ? MESH_STATUS_TIMEOUT : MESH_STATUS_PORT_CONNECTION_REFUSED;
	}
	c->deadline = 0;
	msg_free(m);
	if (f.kind != SI_ACCEPT) {
		CloseHandle(pipe);
		free(c);
		return MESH_STATUS_PORT_CONNECTION_REFUSED;
	}
	c->peer_process = OpenProcess(PROCESS_DUP_HANDLE, FALSE, (DWORD)f.pid);
	p = port_new(SI_CLIENT, attr ? attr->MaxMessageLength : 0);
	p->conn = c;
	c->queue_port = p;
	m = calloc(1, sizeof(*m));
	m->type = MESH_LPC_CONNECTION_REPLY;
	m->message_id = (ULONG)InterlockedIncrement(&si_next_id);
	port_push(p, m);
	c->reader = CreateThread(NULL, 0, reader_main, c, 0, NULL);
	*port = p->event;
	return MESH_STATUS_SUCCESS;
}

static NTSTATUS NTAPI si_accept_connect_port(HANDLE *port, HANDLE conn_port, ULONG flags,
					     OBJECT_ATTRIBUTES *oa, MeshAlpcPortAttributes *attr,
					     void *context, MeshPortMessage *request,
					     MeshAlpcMessageAttributes *msg_attr, BOOLEAN accept)
{
	SiPort *server = port_find(conn_port);
	SiMsg *req;
	SiConn *c;
	SiFrame f = { 0 };

	(void)flags;
	(void)oa;
	(void)msg_attr;
	if (!server || server->kind != SI_SERVER || !request)
		return MESH_STATUS_INVALID_HANDLE;
	req = server->last;
	if (!req || req->message_id != request->MessageId ||
	    (req->type & 0xff) != MESH_LPC_CONNECTION_REQUEST || !req->conn)
		return MESH_STATUS_INVALID_PARAMETER;
	c = req->conn;
	req->conn = NULL;
	f.kind = accept ? SI_ACCEPT : SI_REJECT;
	f.pid = GetCurrentProcessId();
	if (!accept || !c->peer_process) {
		conn_write(c, &f, NULL, NULL);
		FlushFileBuffers(c->pipe);
		CloseHandle(c->pipe);
		if (c->peer_process)
			CloseHandle(c->peer_process);
		CloseHandle(c->decided);
		free(c);
		if (port)
			*port = NULL;
		return accept ? MESH_STATUS_PORT_DISCONNECTED : MESH_STATUS_SUCCESS;
	}
	SiPort *comm = port_new(SI_COMM, attr ? attr->MaxMessageLength : server->max_message);
	comm->conn = c;
	c->context = context;
	if (!conn_write(c, &f, NULL, NULL)) {
		/* The client went already: its PORT_CLOSED comes from the reader. */
	}
	c->reader = CreateThread(NULL, 0, reader_main, c, 0, NULL);
	*port = comm->event;
	return MESH_STATUS_SUCCESS;
}

static SiView *view_find(HANDLE port, void *base, BOOL unlink)
{
	SiView **pv, *v;

	AcquireSRWLockExclusive(&si_lock);
	for (pv = &si_views; (v = *pv) && !(v->port == port && v->base == base); pv = &v->next)
		;
	if (v && unlink)
		*pv = v->next;
	ReleaseSRWLockExclusive(&si_lock);
	return v;
}

static NTSTATUS si_send(SiPort *p, ULONG flags, MeshPortMessage *msg,
			MeshAlpcMessageAttributes *attr)
{
	SiConn *c = p->conn;
	SiFrame f = { 0 };
	HANDLE dup[SI_MAX_HANDLES];
	uint32_t n = 0;
	NTSTATUS status = MESH_STATUS_SUCCESS;

	if (!c || c->closed)
		return MESH_STATUS_INVALID_HANDLE;
	if (msg->u1.s1.DataLength < 0 ||
	    msg->u1.s1.TotalLength != msg->u1.s1.DataLength + (int)sizeof(*msg))
		return MESH_STATUS_INVALID_PARAMETER;
	if ((SIZE_T)msg->u1.s1.TotalLength > p->max_message)
		return SI_STATUS_MESSAGE_TOO_LONG;
	if (!(flags & MESH_ALPC_MSGFLG_RELEASE_MESSAGE))
		f.kind = SI_REQUEST;
	else
		f.kind = msg->MessageId ? SI_REPLY : SI_DATAGRAM;
	f.message_id = f.kind == SI_REQUEST ? (ULONG)InterlockedIncrement(&si_next_id)
					    : msg->MessageId;
	f.data_len = (uint32_t)msg->u1.s1.DataLength;
	if (attr && (attr->ValidAttributes & MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE)) {
		MeshAlpcHandleAttr *ha = alpc_standin_api()->get_message_attribute(
			attr, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
		MeshAlpcHandleAttr32 one = { 0 };
		const MeshAlpcHandleAttr32 *list = &one;
		uint32_t count = 1;

		if (ha->Flags & MESH_ALPC_HANDLEFLG_INDIRECT) {
			list = ha->u2.HandleAttrArray;
			count = ha->u3.HandleCount;
		} else {
			one.Handle = (ULONG)(uintptr_t)ha->u2.Handle;
		}
		if (count > SI_MAX_HANDLES)
			return MESH_STATUS_INVALID_PARAMETER;
		for (; n < count; n++) {
			if (!DuplicateHandle(GetCurrentProcess(),
					     (HANDLE)(uintptr_t)list[n].Handle, c->peer_process,
					     &dup[n], 0, FALSE, DUPLICATE_SAME_ACCESS)) {
				status = MESH_STATUS_INVALID_HANDLE;
				goto undo;
			}
		}
	}
	f.n_handles = n;
	if (attr && (attr->ValidAttributes & MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE)) {
		MeshAlpcDataViewAttr *va = alpc_standin_api()->get_message_attribute(
			attr, MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
		SiView *v = view_find(p->event, va->ViewBase, FALSE);
		HANDLE h;

		if (!v || !v->section || va->ViewSize > v->section->size) {
			status = MESH_STATUS_INVALID_PARAMETER;
			goto undo;
		}
		/* Secured: the receiver gets read access only. */
		if (!DuplicateHandle(GetCurrentProcess(), v->section->mapping, c->peer_process,
				     &h, (va->Flags & MESH_ALPC_VIEWFLG_SECURED_ACCESS)
						 ? FILE_MAP_READ
						 : FILE_MAP_READ | FILE_MAP_WRITE,
				     FALSE, 0)) {
			status = MESH_STATUS_INVALID_HANDLE;
			goto undo;
		}
		f.view_handle = (uint64_t)(uintptr_t)h;
		f.view_size = va->ViewSize;
	}
	if (!conn_write(c, &f, dup, msg + 1))
		return MESH_STATUS_PORT_DISCONNECTED; /* duplicates die with the peer */
	return MESH_STATUS_SUCCESS;
undo:
	while (n--)
		DuplicateHandle(c->peer_process, dup[n], NULL, NULL, 0, FALSE,
				DUPLICATE_CLOSE_SOURCE);
	return status;
}

static NTSTATUS si_receive(SiPort *p, MeshPortMessage *out, SIZE_T *buffer_len,
			   MeshAlpcMessageAttributes *attr, LARGE_INTEGER *timeout)
{
	DWORD ms = INFINITE;
	SiMsg *m;
	const MeshAlpcNtApi *api = alpc_standin_api();

	if (timeout)
		ms = timeout->QuadPart == 0 ? 0 : (DWORD)(-timeout->QuadPart / 10000);
	if (WaitForSingleObject(p->event, ms) != WAIT_OBJECT_0)
		return MESH_STATUS_TIMEOUT;
	AcquireSRWLockExclusive(&p->lock);
	m = p->head;
	if (m && buffer_len && *buffer_len < sizeof(*out) + m->data_len) {
		*buffer_len = sizeof(*out) + m->data_len;
		ReleaseSRWLockExclusive(&p->lock);
		return MESH_STATUS_BUFFER_TOO_SMALL;
	}
	if (m) {
		p->head = m->next;
		if (!p->head) {
			p->tail = NULL;
			ResetEvent(p->event);
		}
	}
	/* Handles of the previous message nobody queried are closed now. */
	msg_free(p->last);
	p->last = m;
	ReleaseSRWLockExclusive(&p->lock);
	if (!m)
		return MESH_STATUS_TIMEOUT;
	memset(out, 0, sizeof(*out));
	out->u1.s1.DataLength = (int16_t)m->data_len;
	out->u1.s1.TotalLength = (int16_t)(m->data_len + sizeof(*out));
	out->u2.s2.Type = (int16_t)m->type;
	out->u3.ClientId.UniqueProcess = (HANDLE)(uintptr_t)m->pid;
	out->MessageId = m->message_id;
	memcpy(out + 1, m->data, m->data_len);
	if (attr) {
		attr->ValidAttributes = 0;
		if ((attr->AllocatedAttributes & MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE) &&
		    p->kind == SI_SERVER) {
			MeshAlpcContextAttr *ca =
				api->get_message_attribute(attr, MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE);
			memset(ca, 0, sizeof(*ca));
			ca->PortContext = m->context;
			ca->MessageId = m->message_id;
			attr->ValidAttributes |= MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE;
		}
		if ((attr->AllocatedAttributes & MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE) &&
		    m->n_handles) {
			MeshAlpcHandleAttr *ha =
				api->get_message_attribute(attr, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
			memset(ha, 0, sizeof(*ha));
			ha->u3.HandleCount = m->n_handles;
			attr->ValidAttributes |= MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE;
		}
		if ((attr->AllocatedAttributes & MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE) &&
		    m->view_section) {
			MeshAlpcDataViewAttr *va =
				api->get_message_attribute(attr, MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
			void *base = MapViewOfFile(m->view_section, FILE_MAP_READ, 0, 0, m->view_size);

			CloseHandle(m->view_section);
			m->view_section = NULL;
			if (base) {
				SiView *v = calloc(1, sizeof(*v));

				v->port = p->event;
				v->base = base;
				AcquireSRWLockExclusive(&si_lock);
				v->next = si_views;
				si_views = v;
				ReleaseSRWLockExclusive(&si_lock);
				memset(va, 0, sizeof(*va));
				va->Flags = MESH_ALPC_VIEWFLG_SECURED_ACCESS;
				va->ViewBase = base;
				va->ViewSize = m->view_size;
				attr->ValidAttributes |= MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE;
			}
		}
	}
	return MESH_STATUS_SUCCESS;
}

static NTSTATUS NTAPI si_send_wait_receive_port(HANDLE port, ULONG flags,
						MeshPortMessage *send_msg,
						MeshAlpcMessageAttributes *send_attr,
						MeshPortMessage *recv_msg, SIZE_T *buffer_len,
						MeshAlpcMessageAttributes *recv_attr,
						LARGE_INTEGER *timeout)
{
	SiPort *p = port_find(port);
	NTSTATUS s = MESH_STATUS_SUCCESS;

	if (!p)
		return MESH_STATUS_INVALID_HANDLE;
	if (send_msg)
		s = si_send(p, flags, send_msg, send_attr);
	if (NT_SUCCESS(s) && recv_msg)
		s = si_receive(p, recv_msg, buffer_len, recv_attr, timeout);
	return s;
}

static NTSTATUS NTAPI si_query_information_message(HANDLE port, MeshPortMessage *msg,
						   ULONG info_class, void *info, ULONG length,
						   ULONG *ret_length)
{
	SiPort *p = port_find(port);
	MeshAlpcMessageHandleInformation *hi = info;
	NTSTATUS s = MESH_STATUS_INVALID_PARAMETER;

	(void)ret_length;
	if (!p)
		return MESH_STATUS_INVALID_HANDLE;
	if (info_class != MESH_ALPC_MESSAGE_HANDLE_INFORMATION || length < sizeof(*hi))
		return MESH_STATUS_INVALID_PARAMETER;
	AcquireSRWLockExclusive(&p->lock);
	if (p->last && p->last->message_id == msg->MessageId && hi->Index < p->last->n_handles &&
	    p->last->handles[hi->Index]) {
		hi->Handle = (ULONG)(uintptr_t)p->last->handles[hi->Index];
		p->last->handles[hi->Index] = NULL;
		InterlockedDecrement(&si_unclaimed);
		s = MESH_STATUS_SUCCESS;
	}
	ReleaseSRWLockExclusive(&p->lock);
	return s;
}

static NTSTATUS NTAPI si_create_port_section(HANDLE port, ULONG flags, HANDLE section,
					     SIZE_T size, HANDLE *alpc_section,
					     SIZE_T *actual_size)
{
	SiSection *s;
	HANDLE h;

	(void)flags;
	if (!port_find(port) || section || size == 0)
		return MESH_STATUS_INVALID_PARAMETER;
	h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE,
			       (DWORD)((uint64_t)size >> 32), (DWORD)size, NULL);
	if (!h)
		return MESH_STATUS_NO_MEMORY;
	s = calloc(1, sizeof(*s));
	s->port = port;
	s->mapping = h;
	s->size = size;
	AcquireSRWLockExclusive(&si_lock);
	s->next = si_sections;
	si_sections = s;
	ReleaseSRWLockExclusive(&si_lock);
	*alpc_section = (HANDLE)s;
	*actual_size = size;
	return MESH_STATUS_SUCCESS;
}

static NTSTATUS NTAPI si_create_section_view(HANDLE port, ULONG flags, MeshAlpcDataViewAttr *va)
{
	SiSection *s = (SiSection *)va->SectionHandle;
	SiView *v;

	(void)flags;
	if (!s || s->port != port || va->ViewSize > s->size)
		return MESH_STATUS_INVALID_PARAMETER;
	va->ViewBase = MapViewOfFile(s->mapping, FILE_MAP_WRITE, 0, 0, va->ViewSize);
	if (!va->ViewBase)
		return MESH_STATUS_NO_MEMORY;
	v = calloc(1, sizeof(*v));
	v->port = port;
	v->base = va->ViewBase;
	v->section = s;
	AcquireSRWLockExclusive(&si_lock);
	v->next = si_views;
	si_views = v;
	ReleaseSRWLockExclusive(&si_lock);
	return MESH_STATUS_SUCCESS;
}

static NTSTATUS NTAPI si_delete_section_view(HANDLE port, ULONG flags, void *base)
{
	SiView *v = view_find(port, base, TRUE);

	(void)flags;
	if (!v)
		return MESH_STATUS_INVALID_PARAMETER;
	UnmapViewOfFile(v->base);
	free(v);
	return MESH_STATUS_SUCCESS;
}

static NTSTATUS NTAPI si_delete_port_section(HANDLE port, ULONG flags, HANDLE alpc_section)
{
	SiSection **ps, *s;
	SiView **pv, *v;

	(void)flags;
	AcquireSRWLockExclusive(&si_lock);
	for (ps = &si_sections; (s = *ps) && s != (SiSection *)alpc_section; ps = &s->next)
		;
	if (s && s->port == port)
		*ps = s->next;
	else
		s = NULL;
	/* Its views go with it (the sender's; the receiver has its own). */
	for (pv = &si_views; s && (v = *pv);) {
		if (v->section == s) {
			*pv = v->next;
			UnmapViewOfFile(v->base);
			free(v);
		} else {
			pv = &v->next;
		}
	}
	ReleaseSRWLockExclusive(&si_lock);
	if (!s)
		return MESH_STATUS_INVALID_PARAMETER;
	CloseHandle(s->mapping);
	free(s);
	return MESH_STATUS_SUCCESS;
}

static const ULONG attr_flags[] = {
	MESH_ALPC_MESSAGE_SECURITY_ATTRIBUTE,
	MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE,
	MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE,
	MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE,
};
static const ULONG attr_sizes[] = {
	sizeof(MeshAlpcSecurityAttr),
	sizeof(MeshAlpcDataViewAttr),
	sizeof(MeshAlpcContextAttr),
	sizeof(MeshAlpcHandleAttr),
};

static NTSTATUS NTAPI si_initialize_message_attribute(ULONG flags,
						      MeshAlpcMessageAttributes *buf,
						      ULONG size, ULONG *required)
{
	ULONG need = sizeof(*buf);

	for (int i = 0; i < 4; i++)
		if (flags & attr_flags[i])
			need += attr_sizes[i];
	*required = need;
	if (!buf || size < need)
		return MESH_STATUS_BUFFER_TOO_SMALL;
	buf->AllocatedAttributes = flags;
	buf->ValidAttributes = 0;
	return MESH_STATUS_SUCCESS;
}

static void *NTAPI si_get_message_attribute(MeshAlpcMessageAttributes *buf, ULONG flag)
{
	ULONG off = sizeof(*buf);

	if (!(buf->AllocatedAttributes & flag))
		return NULL;
	for (int i = 0; i < 4 && attr_flags[i] != flag; i++)
		if (buf->AllocatedAttributes & attr_flags[i])
			off += attr_sizes[i];
	return (uint8_t *)buf + off;
}

static NTSTATUS NTAPI si_create_directory_object(HANDLE *dir, ACCESS_MASK access,
						 OBJECT_ATTRIBUTES *oa)
{
	/* Wine has this one: the real call. */
	typedef NTSTATUS(NTAPI * Fn)(HANDLE *, ACCESS_MASK, OBJECT_ATTRIBUTES *);
	Fn fn = (Fn)(void *)GetProcAddress(GetModuleHandleW(L"ntdll.dll"),
					    "NtCreateDirectoryObject");

	return fn ? fn(dir, access, oa) : MESH_STATUS_NOT_IMPLEMENTED;
}

static void conn_close(SiConn *c)
{
	if (!c)
		return;
	InterlockedExchange(&c->closed, 1);
	SetEvent(c->stop);
	if (c->reader) {
		WaitForSingleObject(c->reader, INFINITE);
		CloseHandle(c->reader);
	}
	CloseHandle(c->pipe);
	if (c->peer_process)
		CloseHandle(c->peer_process);
	if (c->decided)
		CloseHandle(c->decided);
	CloseHandle(c->stop);
	free(c);
}

static BOOL WINAPI si_close(HANDLE h)
{
	SiPort **pp, *p;
	SiMsg *m;

	AcquireSRWLockExclusive(&si_lock);
	for (pp = &si_ports; (p = *pp) && p->event != h; pp = &p->next_port)
		;
	if (p)
		*pp = p->next_port;
	ReleaseSRWLockExclusive(&si_lock);
	if (!p)
		return CloseHandle(h);
	if (p->kind == SI_SERVER) {
		AcquireSRWLockExclusive(&p->lock);
		p->dead = TRUE;
		ReleaseSRWLockExclusive(&p->lock);
		SetEvent(p->stop);
		WaitForSingleObject(p->listener, INFINITE);
		CloseHandle(p->listener);
		CloseHandle(p->stop);
		CloseHandle(p->name_claim);
		/* Connections whose comm port is still open keep running until
		 * it is closed; pending ones are refused by closing them. */
		while ((m = p->head)) {
			p->head = m->next;
			if (m->conn && (m->type & 0xff) == MESH_LPC_CONNECTION_REQUEST)
				conn_close(m->conn);
			msg_free(m);
		}
		if (p->last && p->last->conn &&
		    (p->last->type & 0xff) == MESH_LPC_CONNECTION_REQUEST)
			conn_close(p->last->conn);
	} else {
		conn_close(p->conn);
		while ((m = p->head)) {
			p->head = m->next;
			msg_free(m);
		}
	}
	msg_free(p->last);
	p->last = NULL;
	p->head = p->tail = NULL;
	if (p->kind == SI_SERVER) {
		/* Kept (leaked, test-only): readers of connections whose comm port
		 * is still open, and pending connects, may still push to it. */
		return TRUE;
	}
	CloseHandle(p->event);
	free(p);
	return TRUE;
}

static const MeshAlpcNtApi standin_api = {
	.create_port = si_create_port,
	.connect_port_ex = si_connect_port_ex,
	.accept_connect_port = si_accept_connect_port,
	.send_wait_receive_port = si_send_wait_receive_port,
	.query_information_message = si_query_information_message,
	.create_port_section = si_create_port_section,
	.delete_port_section = si_delete_port_section,
	.create_section_view = si_create_section_view,
	.delete_section_view = si_delete_section_view,
	.initialize_message_attribute = si_initialize_message_attribute,
	.get_message_attribute = si_get_message_attribute,
	.create_directory_object = si_create_directory_object,
	.close = si_close,
};

const MeshAlpcNtApi *alpc_standin_api(void)
{
	return &standin_api;
}

void alpc_standin_counts(long *sections, long *views, long *unclaimed_handles)
{
	long ns = 0, nv = 0;

	AcquireSRWLockShared(&si_lock);
	for (SiSection *s = si_sections; s; s = s->next)
		ns++;
	for (SiView *v = si_views; v; v = v->next)
		nv++;
	ReleaseSRWLockShared(&si_lock);
	*sections = ns;
	*views = nv;
	*unclaimed_handles = si_unclaimed;
}

void alpc_standin_hold_connect(const wchar_t *name, HANDLE held, HANDLE release)
{
	AcquireSRWLockExclusive(&si_lock);
	si_hold_name[0] = 0;
	si_hold_held = si_hold_release = NULL;
	if (name && wcslen(name) < 64) {
		wcscpy(si_hold_name, name);
		si_hold_held = held;
		si_hold_release = release;
	}
	ReleaseSRWLockExclusive(&si_lock);
}
