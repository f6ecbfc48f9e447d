/* SPDX-License-Identifier: MIT */
/* The NT ALPC calls from ntdll (alpc-nt-private.h). No GLib. */
#include "alpc-nt-private.h"

static MeshAlpcNtApi ntdll_api;
static const char *ntdll_missing;
static INIT_ONCE ntdll_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK resolve(INIT_ONCE *once, void *param, void **ctx)
{
	static const struct {
		const char *name;
		size_t offset;
	} names[] = {
		{ "NtAlpcCreatePort", offsetof(MeshAlpcNtApi, create_port) },
		{ "NtAlpcConnectPortEx", offsetof(MeshAlpcNtApi, connect_port_ex) },
		{ "NtAlpcAcceptConnectPort", offsetof(MeshAlpcNtApi, accept_connect_port) },
		{ "NtAlpcSendWaitReceivePort", offsetof(MeshAlpcNtApi, send_wait_receive_port) },
		{ "NtAlpcQueryInformationMessage",
		  offsetof(MeshAlpcNtApi, query_information_message) },
		{ "NtAlpcCreatePortSection", offsetof(MeshAlpcNtApi, create_port_section) },
		{ "NtAlpcDeletePortSection", offsetof(MeshAlpcNtApi, delete_port_section) },
		{ "NtAlpcCreateSectionView", offsetof(MeshAlpcNtApi, create_section_view) },
		{ "NtAlpcDeleteSectionView", offsetof(MeshAlpcNtApi, delete_section_view) },
		{ "AlpcInitializeMessageAttribute",
		  offsetof(MeshAlpcNtApi, initialize_message_attribute) },
		{ "AlpcGetMessageAttribute", offsetof(MeshAlpcNtApi, get_message_attribute) },
		{ "NtCreateDirectoryObject", offsetof(MeshAlpcNtApi, create_directory_object) },
	};
	HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");

	(void)once;
	(void)param;
	(void)ctx;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		FARPROC p = ntdll ? GetProcAddress(ntdll, names[i].name) : NULL;

		if (!p) {
			ntdll_missing = names[i].name;
			return TRUE;
		}
		*(FARPROC *)((char *)&ntdll_api + names[i].offset) = p;
	}
	ntdll_api.close = CloseHandle;
	return TRUE;
}

const MeshAlpcNtApi *alpc_nt_api_ntdll(const char **missing)
{
	InitOnceExecuteOnce(&ntdll_once, resolve, NULL, NULL);
	if (missing)
		*missing = ntdll_missing;
	return ntdll_missing ? NULL : &ntdll_api;
}
