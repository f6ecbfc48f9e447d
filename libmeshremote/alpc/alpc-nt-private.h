/* SPDX-License-Identifier: MIT */
/*
 * The NT ALPC calls the ALPC node uses, as a table of function pointers.
 *
 * The library fills the table from ntdll (alpc_nt_api_ntdll()); the
 * tests fill it with a stand-in built on named pipes
 * (tests/alpc-standin.c), because Wine has no ALPC. Nothing here needs GLib
 * so that the stand-in and its tests build without it.
 *
 * Layouts are the x64 ones of the public reverse-engineered headers (phnt,
 * the ntapi crate) as upstream's pal::windows::alpc uses them. Only x64 is
 * supported (static asserts below).
 */
#pragma once

#include <windows.h>
#include <winternl.h>
#include <stddef.h>
#include <stdint.h>

#ifndef NT_SUCCESS
#define NT_SUCCESS(s) (((NTSTATUS)(s)) >= 0)
#endif

/* Statuses the node tells apart (ntstatus.h, without pulling it in). */
#define MESH_STATUS_SUCCESS ((NTSTATUS)0x00000000L)
#define MESH_STATUS_TIMEOUT ((NTSTATUS)0x00000102L)
#define MESH_STATUS_INVALID_HANDLE ((NTSTATUS)0xC0000008L)
#define MESH_STATUS_INVALID_PARAMETER ((NTSTATUS)0xC000000DL)
#define MESH_STATUS_NO_MEMORY ((NTSTATUS)0xC0000017L)
#define MESH_STATUS_BUFFER_TOO_SMALL ((NTSTATUS)0xC0000023L)
#define MESH_STATUS_OBJECT_NAME_NOT_FOUND ((NTSTATUS)0xC0000034L)
#define MESH_STATUS_OBJECT_NAME_COLLISION ((NTSTATUS)0xC0000035L)
#define MESH_STATUS_PORT_CONNECTION_REFUSED ((NTSTATUS)0xC0000041L)
#define MESH_STATUS_PORT_DISCONNECTED ((NTSTATUS)0xC0000037L)
#define MESH_STATUS_NOT_IMPLEMENTED ((NTSTATUS)0xC0000002L)

/* PORT_MESSAGE.u2.s2.Type (low byte) and its flag. */
#define MESH_LPC_REQUEST 1
#define MESH_LPC_REPLY 2
#define MESH_LPC_DATAGRAM 3
#define MESH_LPC_PORT_CLOSED 5
#define MESH_LPC_CLIENT_DIED 6
#define MESH_LPC_CONNECTION_REQUEST 10
#define MESH_LPC_CONNECTION_REPLY 11
#define MESH_LPC_CANCELED 12
#define MESH_LPC_CONTINUATION_REQUIRED 0x2000

/* ALPC_PORT_ATTRIBUTES.Flags */
#define MESH_ALPC_PORFLG_ACCEPT_REQUESTS 0x00020000u
#define MESH_ALPC_PORFLG_WAITABLE_PORT 0x00040000u
#define MESH_ALPC_PORFLG_ACCEPT_DUP_HANDLES 0x00080000u
#define MESH_ALPC_PORFLG_ACCEPT_INDIRECT_HANDLES 0x02000000u
#define MESH_OB_ALL_OBJECT_TYPE_CODES 0x00000ffdu

/* NtAlpcSendWaitReceivePort flags */
#define MESH_ALPC_MSGFLG_RELEASE_MESSAGE 0x00010000u

/* Message attributes: their flags, in the order they are laid out. */
#define MESH_ALPC_MESSAGE_SECURITY_ATTRIBUTE 0x80000000u
#define MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE 0x40000000u
#define MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE 0x20000000u
#define MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE 0x10000000u

#define MESH_ALPC_HANDLEFLG_DUPLICATE_SAME_ACCESS 0x00010000u
#define MESH_ALPC_HANDLEFLG_INDIRECT 0x00040000u

#define MESH_ALPC_VIEWFLG_UNMAP_EXISTING 0x00010000u
#define MESH_ALPC_VIEWFLG_AUTO_RELEASE 0x00020000u
#define MESH_ALPC_VIEWFLG_SECURED_ACCESS 0x00040000u

/* ALPC_MESSAGE_INFORMATION_CLASS */
#define MESH_ALPC_MESSAGE_HANDLE_INFORMATION 3

typedef struct {
	union {
		struct {
			int16_t DataLength;
			int16_t TotalLength;
		} s1;
		ULONG Length;
	} u1;
	union {
		struct {
			int16_t Type;
			int16_t DataInfoOffset;
		} s2;
		ULONG ZeroInit;
	} u2;
	union {
		struct {
			HANDLE UniqueProcess;
			HANDLE UniqueThread;
		} ClientId;
		double DoNotUseThisField;
	} u3;
	ULONG MessageId;
	union {
		SIZE_T ClientViewSize;
		ULONG CallbackId;
	} u4;
} MeshPortMessage;

typedef struct {
	ULONG Length;
	ULONG ImpersonationLevel;
	UCHAR ContextTrackingMode;
	UCHAR EffectiveOnly;
} MeshSecurityQos; /* SECURITY_QUALITY_OF_SERVICE: 12 bytes */

typedef struct {
	ULONG Flags;
	MeshSecurityQos SecurityQos;
	SIZE_T MaxMessageLength;
	SIZE_T MemoryBandwidth;
	SIZE_T MaxPoolUsage;
	SIZE_T MaxSectionSize;
	SIZE_T MaxViewSize;
	SIZE_T MaxTotalSectionSize;
	ULONG DupObjectTypes;
	ULONG Reserved;
} MeshAlpcPortAttributes;

typedef struct {
	ULONG AllocatedAttributes;
	ULONG ValidAttributes;
} MeshAlpcMessageAttributes;

typedef struct {
	ULONG Flags;
	ULONG Handle;
	ULONG ObjectType;
	ULONG Access;
} MeshAlpcHandleAttr32;

typedef struct {
	ULONG Flags;
	union {
		HANDLE Handle;
		MeshAlpcHandleAttr32 *HandleAttrArray;
	} u2;
	union {
		ULONG ObjectType;
		ULONG HandleCount;
	} u3;
	ULONG DesiredAccess;
} MeshAlpcHandleAttr;

typedef struct {
	ULONG Flags;
	HANDLE SectionHandle;
	void *ViewBase;
	SIZE_T ViewSize;
} MeshAlpcDataViewAttr;

typedef struct {
	void *PortContext;
	void *MessageContext;
	ULONG Sequence;
	ULONG MessageId;
	ULONG CallbackId;
} MeshAlpcContextAttr;

typedef struct {
	ULONG Flags;
	void *QoS;
	HANDLE ContextHandle;
} MeshAlpcSecurityAttr;

typedef struct {
	ULONG Index;
	ULONG Flags;
	ULONG Handle;
	ULONG ObjectType;
	ULONG GrantedAccess;
} MeshAlpcMessageHandleInformation;

_Static_assert(sizeof(void *) == 8, "the ALPC node supports x64 only");
_Static_assert(sizeof(MeshPortMessage) == 40, "PORT_MESSAGE");
_Static_assert(sizeof(MeshAlpcPortAttributes) == 72, "ALPC_PORT_ATTRIBUTES");
_Static_assert(sizeof(MeshAlpcHandleAttr) == 24, "ALPC_HANDLE_ATTR");
_Static_assert(sizeof(MeshAlpcDataViewAttr) == 32, "ALPC_DATA_VIEW_ATTR");
_Static_assert(sizeof(MeshAlpcContextAttr) == 32, "ALPC_CONTEXT_ATTR");
_Static_assert(sizeof(MeshAlpcSecurityAttr) == 24, "ALPC_SECURITY_ATTR");

/*
 * MeshAlpcNtApi: the calls, with ntdll's signatures (NTAPI). Every member is
 * set. The node relies on exactly these semantics (the stand-in emulates
 * them, and nothing else):
 *
 * - create_port: a server (connection) port named by ObjectAttributes
 *   (RootDirectory + ObjectName); with MESH_ALPC_PORFLG_WAITABLE_PORT the
 *   handle is signaled while a message is queued on it. Name collision:
 *   MESH_STATUS_OBJECT_NAME_COLLISION.
 * - connect_port_ex: blocks until the server accepts (returns a waitable
 *   client port; a CONNECTION_REPLY message is then queued on it) or
 *   rejects (MESH_STATUS_PORT_CONNECTION_REFUSED). The connection message's
 *   data reaches the server in its CONNECTION_REQUEST message. No such
 *   port: MESH_STATUS_OBJECT_NAME_NOT_FOUND. With a (relative) timeout:
 *   MESH_STATUS_TIMEOUT (a success code) and no port if the server has not
 *   answered by then. A server port closed while the connect waits
 *   refuses it.
 * - accept_connect_port: answers a CONNECTION_REQUEST (by its MessageId);
 *   when accepting, PortContext comes back in the context attribute of
 *   every later message of that connection on the server port.
 * - send_wait_receive_port: send only (datagram with RELEASE_MESSAGE; a
 *   request without it, whose reply arrives on the sender's port; a reply
 *   with the request's MessageId/CallbackId), or receive only (with a
 *   timeout: MESH_STATUS_TIMEOUT when nothing is queued). Received
 *   messages carry the handle attribute (handles duplicated into the
 *   receiver by the kernel) and the view attribute (a read-only mapping of
 *   the sender's view for SECURED views). When the other end of a
 *   connection goes, the server port receives PORT_CLOSED for it (with its
 *   context) and the client port receives PORT_CLOSED; sends then fail.
 * - query_information_message: MESH_ALPC_MESSAGE_HANDLE_INFORMATION by
 *   index: the received handle, owned by the caller from then on.
 * - create_port_section / create_section_view / delete_section_view /
 *   delete_port_section: a section for one large message and a writable
 *   view of it; a received view is released with delete_section_view on
 *   the port it arrived on.
 * - initialize_message_attribute / get_message_attribute: the layout of an
 *   attribute buffer (the node never computes offsets itself).
 * - create_directory_object: NtCreateDirectoryObject (an anonymous one when
 *   ObjectAttributes has no name).
 * - close: closes a port (CloseHandle); the other end of each of its
 *   connections then sees PORT_CLOSED.
 */
typedef struct {
	NTSTATUS(NTAPI *create_port)(HANDLE *port, OBJECT_ATTRIBUTES *oa,
				     MeshAlpcPortAttributes *attr);
	NTSTATUS(NTAPI *connect_port_ex)(HANDLE *port, OBJECT_ATTRIBUTES *conn_oa,
					 OBJECT_ATTRIBUTES *client_oa,
					 MeshAlpcPortAttributes *attr, ULONG flags,
					 void *server_sd, MeshPortMessage *conn_msg,
					 SIZE_T *buffer_len, MeshAlpcMessageAttributes *out_attr,
					 MeshAlpcMessageAttributes *in_attr,
					 LARGE_INTEGER *timeout);
	NTSTATUS(NTAPI *accept_connect_port)(HANDLE *port, HANDLE conn_port, ULONG flags,
					     OBJECT_ATTRIBUTES *oa,
					     MeshAlpcPortAttributes *attr, void *context,
					     MeshPortMessage *request,
					     MeshAlpcMessageAttributes *msg_attr,
					     BOOLEAN accept);
	NTSTATUS(NTAPI *send_wait_receive_port)(HANDLE port, ULONG flags,
						MeshPortMessage *send_msg,
						MeshAlpcMessageAttributes *send_attr,
						MeshPortMessage *recv_msg, SIZE_T *buffer_len,
						MeshAlpcMessageAttributes *recv_attr,
						LARGE_INTEGER *timeout);
	NTSTATUS(NTAPI *query_information_message)(HANDLE port, MeshPortMessage *msg,
						   ULONG info_class, void *info, ULONG length,
						   ULONG *ret_length);
	NTSTATUS(NTAPI *create_port_section)(HANDLE port, ULONG flags, HANDLE section,
					     SIZE_T size, HANDLE *alpc_section,
					     SIZE_T *actual_size);
	NTSTATUS(NTAPI *delete_port_section)(HANDLE port, ULONG flags, HANDLE alpc_section);
	NTSTATUS(NTAPI *create_section_view)(HANDLE port, ULONG flags, MeshAlpcDataViewAttr *view);
	NTSTATUS(NTAPI *delete_section_view)(HANDLE port, ULONG flags, void *view_base);
	NTSTATUS(NTAPI *initialize_message_attribute)(ULONG flags, MeshAlpcMessageAttributes *buf,
						      ULONG size, ULONG *required);
	void *(NTAPI *get_message_attribute)(MeshAlpcMessageAttributes *buf, ULONG flag);
	NTSTATUS(NTAPI *create_directory_object)(HANDLE *dir, ACCESS_MASK access,
						 OBJECT_ATTRIBUTES *oa);
	BOOL(WINAPI *close)(HANDLE handle);
} MeshAlpcNtApi;

/*
 * alpc_nt_api_ntdll: the table resolved from ntdll with GetProcAddress,
 * once. Returns NULL (and sets *missing to the first name not found) where
 * ntdll lacks one of them, as Wine's does.
 */
const MeshAlpcNtApi *alpc_nt_api_ntdll(const char **missing);
