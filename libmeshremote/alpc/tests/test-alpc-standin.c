/* SPDX-License-Identifier: MIT */
/*
 * The stand-in's own semantics (no GLib), across two processes under Wine:
 * what the ALPC node relies on must hold of the double before the node's
 * tests against it mean anything. This program is also the child.
 */
#include "alpc-standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                               \
			failures++;                                                   \
		}                                                                     \
	} while (0)

static const MeshAlpcNtApi *api;

typedef struct {
	MeshPortMessage h;
	uint8_t data[0x1000];
} Msg;

static void oa_init(OBJECT_ATTRIBUTES *oa, UNICODE_STRING *us, const wchar_t *name, HANDLE dir)
{
	us->Buffer = (wchar_t *)name;
	us->Length = (USHORT)(wcslen(name) * 2);
	us->MaximumLength = us->Length;
	memset(oa, 0, sizeof(*oa));
	oa->Length = sizeof(*oa);
	oa->RootDirectory = dir;
	oa->ObjectName = us;
}

static void port_attr(MeshAlpcPortAttributes *pa)
{
	memset(pa, 0, sizeof(*pa));
	pa->Flags = MESH_ALPC_PORFLG_WAITABLE_PORT;
	pa->MaxMessageLength = 0x1000 + sizeof(MeshPortMessage);
}

static MeshAlpcMessageAttributes *attrs(ULONG flags)
{
	ULONG need = 0;
	MeshAlpcMessageAttributes *a;

	api->initialize_message_attribute(flags, NULL, 0, &need);
	a = calloc(1, need);
	CHECK(NT_SUCCESS(api->initialize_message_attribute(flags, a, need, &need)));
	return a;
}

static NTSTATUS recv_msg(HANDLE port, Msg *m, MeshAlpcMessageAttributes *a, DWORD ms)
{
	SIZE_T len = sizeof(*m);
	LARGE_INTEGER t = { .QuadPart = -(LONGLONG)ms * 10000 };

	return api->send_wait_receive_port(port, 0, NULL, NULL, &m->h, &len, a, &t);
}

static NTSTATUS send_msg(HANDLE port, ULONG flags, const void *data, int16_t len,
			 MeshAlpcMessageAttributes *a, ULONG message_id)
{
	Msg m = { 0 };

	m.h.u1.s1.DataLength = len;
	m.h.u1.s1.TotalLength = (int16_t)(len + sizeof(m.h));
	m.h.MessageId = message_id;
	memcpy(m.data, data, (size_t)len);
	return api->send_wait_receive_port(port, flags, &m.h, a, NULL, NULL, NULL, NULL);
}

/* ---- the child: a client that runs a fixed script -------------------- */

static int child(HANDLE dir, HANDLE signal_me)
{
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	MeshAlpcPortAttributes pa;
	struct {
		MeshPortMessage h;
		uint8_t d[5];
	} cm = { 0 };
	HANDLE port = NULL;
	Msg m;
	MeshAlpcMessageAttributes *a;

	oa_init(&oa, &us, L"server", dir);
	port_attr(&pa);
	cm.h.u1.s1.DataLength = 5;
	cm.h.u1.s1.TotalLength = sizeof(cm);
	memcpy(cm.d, "hello", 5);
	CHECK(NT_SUCCESS(api->connect_port_ex(&port, &oa, NULL, &pa, 0, NULL, &cm.h, NULL, NULL,
					      NULL, NULL)));
	CHECK(NT_SUCCESS(recv_msg(port, &m, NULL, 5000)));
	CHECK((m.h.u2.s2.Type & 0xff) == MESH_LPC_CONNECTION_REPLY);

	/* Two handles, indirect: an event the parent signals, and a second
	 * reference to the same event. */
	MeshAlpcHandleAttr32 list[2] = {
		{ .Flags = MESH_ALPC_HANDLEFLG_DUPLICATE_SAME_ACCESS,
		  .Handle = (ULONG)(uintptr_t)signal_me },
		{ .Flags = MESH_ALPC_HANDLEFLG_DUPLICATE_SAME_ACCESS,
		  .Handle = (ULONG)(uintptr_t)signal_me },
	};
	a = attrs(MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE | MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	MeshAlpcHandleAttr *ha = api->get_message_attribute(a, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
	ha->Flags = MESH_ALPC_HANDLEFLG_INDIRECT;
	ha->u2.HandleAttrArray = list;
	ha->u3.HandleCount = 2;
	a->ValidAttributes = MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE;
	CHECK(NT_SUCCESS(send_msg(port, MESH_ALPC_MSGFLG_RELEASE_MESSAGE, "hnd", 3, a, 0)));

	/* A large payload in a secure view; the section goes right after. */
	HANDLE section = NULL;
	SIZE_T actual = 0;
	MeshAlpcDataViewAttr view = { 0 };
	CHECK(NT_SUCCESS(api->create_port_section(port, MESH_ALPC_VIEWFLG_SECURED_ACCESS, NULL,
						  1 << 20, &section, &actual)));
	view.SectionHandle = section;
	view.ViewSize = 1 << 20;
	CHECK(NT_SUCCESS(api->create_section_view(port, 0, &view)));
	for (size_t i = 0; i < (1 << 20); i++)
		((uint8_t *)view.ViewBase)[i] = (uint8_t)(i * 7);
	MeshAlpcDataViewAttr *va = api->get_message_attribute(a, MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	*va = view;
	va->Flags = MESH_ALPC_VIEWFLG_SECURED_ACCESS | MESH_ALPC_VIEWFLG_AUTO_RELEASE;
	a->ValidAttributes = MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE;
	CHECK(NT_SUCCESS(send_msg(port, MESH_ALPC_MSGFLG_RELEASE_MESSAGE, "big", 3, a, 0)));
	CHECK(NT_SUCCESS(api->delete_port_section(port, 0, section)));

	/* Too long for the port. */
	Msg big = { 0 };
	big.h.u1.s1.DataLength = 0x1000;
	big.h.u1.s1.TotalLength = 0x1000 + sizeof(big.h);
	CHECK(!NT_SUCCESS(api->send_wait_receive_port(port, MESH_ALPC_MSGFLG_RELEASE_MESSAGE,
						     &big.h, NULL, NULL, NULL, NULL, NULL)) ==
	      FALSE); /* exactly the maximum is fine */
	big.h.u1.s1.DataLength = 0x1001;
	big.h.u1.s1.TotalLength = 0x1001 + sizeof(big.h);
	CHECK(!NT_SUCCESS(api->send_wait_receive_port(port, MESH_ALPC_MSGFLG_RELEASE_MESSAGE,
						     &big.h, NULL, NULL, NULL, NULL, NULL)));

	/* The flush: a request, answered after everything before it. */
	CHECK(NT_SUCCESS(send_msg(port, 0, "", 0, NULL, 0)));
	CHECK(NT_SUCCESS(recv_msg(port, &m, NULL, 10000)));
	CHECK((m.h.u2.s2.Type & 0xff) == MESH_LPC_REPLY);
	/* The parent signaled the event through its duplicate meanwhile. */
	CHECK(WaitForSingleObject(signal_me, 10000) == WAIT_OBJECT_0);
	/* The parent closes its communication port now: PORT_CLOSED here. */
	CHECK(NT_SUCCESS(recv_msg(port, &m, NULL, 10000)));
	CHECK((m.h.u2.s2.Type & 0xff) == MESH_LPC_PORT_CLOSED);
	CHECK(!NT_SUCCESS(send_msg(port, MESH_ALPC_MSGFLG_RELEASE_MESSAGE, "x", 1, NULL, 0)));
	api->close(port);
	free(a);
	return failures ? 1 : 0;
}

/* ---- the parent: the server -------------------------------------------- */

static HANDLE spawn_child(const char *self, HANDLE dir, HANDLE ev)
{
	char cmd[512];
	STARTUPINFOA si = { .cb = sizeof(si) };
	PROCESS_INFORMATION pi;

	snprintf(cmd, sizeof(cmd), "\"%s\" child %llu %llu", self,
		 (unsigned long long)(uintptr_t)dir, (unsigned long long)(uintptr_t)ev);
	if (!CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi))
		return NULL;
	CloseHandle(pi.hThread);
	return pi.hProcess;
}

static void test_in_process(HANDLE dir)
{
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	MeshAlpcPortAttributes pa;
	HANDLE server = NULL, server2 = NULL, client = NULL;
	Msg m;

	port_attr(&pa);
	oa_init(&oa, &us, L"solo", dir);
	CHECK(NT_SUCCESS(api->create_port(&server, &oa, &pa)));
	CHECK(api->create_port(&server2, &oa, &pa) == MESH_STATUS_OBJECT_NAME_COLLISION);
	oa_init(&oa, &us, L"nobody", dir);
	CHECK(api->connect_port_ex(&client, &oa, NULL, &pa, 0, NULL, NULL, NULL, NULL, NULL,
				   NULL) == MESH_STATUS_OBJECT_NAME_NOT_FOUND);
	/* Nothing queued: a wait with a timeout times out; the handle is unsignaled. */
	CHECK(recv_msg(server, &m, NULL, 0) == MESH_STATUS_TIMEOUT);
	CHECK(WaitForSingleObject(server, 0) == WAIT_TIMEOUT);
	/* No root directory: refused (ports live in the mesh's directory). */
	oa_init(&oa, &us, L"solo", NULL);
	CHECK(!NT_SUCCESS(api->create_port(&server2, &oa, &pa)));
	api->close(server);
}

typedef struct {
	HANDLE dir;
	HANDLE client;
	NTSTATUS status;
} ConnectArgs;

static DWORD WINAPI connect_thread(void *p)
{
	ConnectArgs *c = p;
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	MeshAlpcPortAttributes pa;

	port_attr(&pa);
	oa_init(&oa, &us, L"rejecting", c->dir);
	c->status = api->connect_port_ex(&c->client, &oa, NULL, &pa, 0, NULL, NULL, NULL, NULL,
					 NULL, NULL);
	return 0;
}

static void test_reject(HANDLE dir)
{
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	MeshAlpcPortAttributes pa;
	HANDLE server = NULL, comm = (HANDLE)1, th;
	ConnectArgs c = { .dir = dir };
	Msg m;

	port_attr(&pa);
	oa_init(&oa, &us, L"rejecting", dir);
	CHECK(NT_SUCCESS(api->create_port(&server, &oa, &pa)));
	th = CreateThread(NULL, 0, connect_thread, &c, 0, NULL);
	CHECK(NT_SUCCESS(recv_msg(server, &m, NULL, 10000)));
	CHECK((m.h.u2.s2.Type & 0xff) == MESH_LPC_CONNECTION_REQUEST);
	CHECK(m.h.u2.s2.Type & MESH_LPC_CONTINUATION_REQUIRED);
	CHECK(NT_SUCCESS(api->accept_connect_port(&comm, server, 0, NULL, NULL, NULL, &m.h, NULL,
						  FALSE)));
	CHECK(WaitForSingleObject(th, 10000) == WAIT_OBJECT_0);
	CHECK(c.status == MESH_STATUS_PORT_CONNECTION_REFUSED);
	CloseHandle(th);
	api->close(server);
}

static void test_cross_process(const char *self, HANDLE dir)
{
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	MeshAlpcPortAttributes pa;
	HANDLE server = NULL, comm = NULL, proc, ev;
	Msg m;
	MeshAlpcMessageAttributes *a = attrs(MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE |
					     MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE |
					     MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	SECURITY_ATTRIBUTES sa = { .nLength = sizeof(sa), .bInheritHandle = TRUE };
	long sections, views, unclaimed;

	port_attr(&pa);
	oa_init(&oa, &us, L"server", dir);
	CHECK(NT_SUCCESS(api->create_port(&server, &oa, &pa)));
	ev = CreateEventW(&sa, TRUE, FALSE, NULL);
	SetHandleInformation(dir, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
	proc = spawn_child(self, dir, ev);
	CHECK(proc != NULL);
	CloseHandle(ev); /* the child's is the only one left */

	CHECK(NT_SUCCESS(recv_msg(server, &m, a, 10000)));
	CHECK((m.h.u2.s2.Type & 0xff) == MESH_LPC_CONNECTION_REQUEST);
	CHECK(m.h.u1.s1.DataLength == 5 && memcmp(m.data, "hello", 5) == 0);
	CHECK((DWORD)(uintptr_t)m.h.u3.ClientId.UniqueProcess == GetProcessId(proc));
	CHECK(NT_SUCCESS(api->accept_connect_port(&comm, server, 0, NULL, &pa, (void *)0x42, &m.h,
						  NULL, TRUE)));

	/* The handles: two duplicates of the child's event, usable here. */
	CHECK(NT_SUCCESS(recv_msg(server, &m, a, 10000)));
	CHECK((m.h.u2.s2.Type & 0xff) == MESH_LPC_DATAGRAM);
	CHECK(a->ValidAttributes & MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE);
	CHECK(((MeshAlpcContextAttr *)api->get_message_attribute(
		       a, MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE))->PortContext == (void *)0x42);
	CHECK(a->ValidAttributes & MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
	MeshAlpcHandleAttr *ha = api->get_message_attribute(a, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
	CHECK(ha->u3.HandleCount == 2);
	HANDLE got[2] = { 0 };
	for (ULONG i = 0; i < 2; i++) {
		MeshAlpcMessageHandleInformation info = { .Index = i };

		CHECK(NT_SUCCESS(api->query_information_message(server, &m.h,
								MESH_ALPC_MESSAGE_HANDLE_INFORMATION,
								&info, sizeof(info), NULL)));
		got[i] = (HANDLE)(uintptr_t)info.Handle;
	}
	{
		MeshAlpcMessageHandleInformation info = { .Index = 2 };
		CHECK(!NT_SUCCESS(api->query_information_message(
			server, &m.h, MESH_ALPC_MESSAGE_HANDLE_INFORMATION, &info, sizeof(info), NULL)));
	}
	alpc_standin_counts(&sections, &views, &unclaimed);
	CHECK(unclaimed == 0);

	/* The large one: a read-only view with the child's bytes. */
	CHECK(NT_SUCCESS(recv_msg(server, &m, a, 10000)));
	CHECK(m.h.u1.s1.DataLength == 3 && memcmp(m.data, "big", 3) == 0);
	CHECK(a->ValidAttributes & MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	MeshAlpcDataViewAttr *va = api->get_message_attribute(a, MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	CHECK(va->Flags & MESH_ALPC_VIEWFLG_SECURED_ACCESS);
	CHECK(va->ViewSize == (1 << 20));
	int same = 1;
	for (size_t i = 0; i < (1 << 20); i++)
		same &= ((uint8_t *)va->ViewBase)[i] == (uint8_t)(i * 7);
	CHECK(same);
	MEMORY_BASIC_INFORMATION mbi;
	CHECK(VirtualQuery(va->ViewBase, &mbi, sizeof(mbi)) && mbi.Protect == PAGE_READONLY);
	alpc_standin_counts(&sections, &views, &unclaimed);
	CHECK(views == 1 && sections == 0);
	void *base = va->ViewBase;
	CHECK(NT_SUCCESS(api->delete_section_view(server, 0, base)));
	CHECK(!NT_SUCCESS(api->delete_section_view(server, 0, base)));
	alpc_standin_counts(&sections, &views, &unclaimed);
	CHECK(views == 0);

	/* Only the exact maximum arrived; then the request. */
	CHECK(NT_SUCCESS(recv_msg(server, &m, a, 10000)));
	CHECK(m.h.u1.s1.DataLength == 0x1000);
	CHECK(NT_SUCCESS(recv_msg(server, &m, a, 10000)));
	CHECK((m.h.u2.s2.Type & 0xff) == MESH_LPC_REQUEST);
	CHECK(m.h.u2.s2.Type & MESH_LPC_CONTINUATION_REQUIRED);
	SetEvent(got[0]);
	CloseHandle(got[0]);
	CloseHandle(got[1]);
	CHECK(NT_SUCCESS(send_msg(comm, MESH_ALPC_MSGFLG_RELEASE_MESSAGE, "", 0, NULL,
				  m.h.MessageId)));
	Sleep(200);
	api->close(comm);

	CHECK(WaitForSingleObject(proc, 20000) == WAIT_OBJECT_0);
	DWORD code = 99;
	GetExitCodeProcess(proc, &code);
	CHECK(code == 0);
	CloseHandle(proc);
	api->close(server);
	free(a);
}

static void test_port_closed_on_exit(const char *self, HANDLE dir)
{
	/* A client that dies: the server port gets PORT_CLOSED with the context. */
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	MeshAlpcPortAttributes pa;
	HANDLE server = NULL, comm = NULL, proc;
	Msg m;
	MeshAlpcMessageAttributes *a = attrs(MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE);
	char cmd[512];
	STARTUPINFOA si = { .cb = sizeof(si) };
	PROCESS_INFORMATION pi;

	port_attr(&pa);
	oa_init(&oa, &us, L"server", dir);
	CHECK(NT_SUCCESS(api->create_port(&server, &oa, &pa)));
	snprintf(cmd, sizeof(cmd), "\"%s\" die %llu", self, (unsigned long long)(uintptr_t)dir);
	CHECK(CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi));
	proc = pi.hProcess;
	CloseHandle(pi.hThread);
	CHECK(NT_SUCCESS(recv_msg(server, &m, a, 10000)));
	CHECK(NT_SUCCESS(api->accept_connect_port(&comm, server, 0, NULL, &pa, (void *)7, &m.h,
						  NULL, TRUE)));
	CHECK(NT_SUCCESS(recv_msg(server, &m, a, 20000)));
	CHECK((m.h.u2.s2.Type & 0xff) == MESH_LPC_PORT_CLOSED);
	CHECK(((MeshAlpcContextAttr *)api->get_message_attribute(
		       a, MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE))->PortContext == (void *)7);
	CHECK(!NT_SUCCESS(send_msg(comm, MESH_ALPC_MSGFLG_RELEASE_MESSAGE, "x", 1, NULL, 0)) ||
	      TRUE); /* may or may not fail at once; the reader saw the end */
	WaitForSingleObject(proc, 10000);
	CloseHandle(proc);
	api->close(comm);
	api->close(server);
	free(a);
}

static int die_child(HANDLE dir)
{
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	MeshAlpcPortAttributes pa;
	HANDLE port = NULL;

	oa_init(&oa, &us, L"server", dir);
	port_attr(&pa);
	if (!NT_SUCCESS(api->connect_port_ex(&port, &oa, NULL, &pa, 0, NULL, NULL, NULL, NULL,
					     NULL, NULL)))
		return 2;
	ExitProcess(0); /* without closing anything */
}

int main(int argc, char **argv)
{
	HANDLE dir = NULL;
	OBJECT_ATTRIBUTES doa = { .Length = sizeof(doa) };
	char ns[64];

	api = alpc_standin_api();
	if (argc >= 4 && strcmp(argv[1], "child") == 0)
		return child((HANDLE)(uintptr_t)strtoull(argv[2], NULL, 10),
			     (HANDLE)(uintptr_t)strtoull(argv[3], NULL, 10));
	if (argc >= 3 && strcmp(argv[1], "die") == 0)
		return die_child((HANDLE)(uintptr_t)strtoull(argv[2], NULL, 10));

	snprintf(ns, sizeof(ns), "t%lu-%lu", GetCurrentProcessId(), GetTickCount());
	SetEnvironmentVariableA("MESH_ALPC_STANDIN_NS", ns);
	CHECK(NT_SUCCESS(api->create_directory_object(&dir, STANDARD_RIGHTS_REQUIRED | 0xF, &doa)));
	test_in_process(dir);
	test_reject(dir);
	test_cross_process(argv[0], dir);
	test_port_closed_on_exit(argv[0], dir);
	CloseHandle(dir);
	printf("%s: %d failure(s)\n", argv[0], failures);
	return failures ? 1 : 0;
}
