/* SPDX-License-Identifier: MIT */
/*
 * The finalize part of a profile, encoded for the child's environment:
 *
 *   v=1;nnp=B;caps=B;tmp=B;ll=B;llmin=N;sc=N[;p=A:HEX]...[;s=NAME]...[;g=XXXXXXXX]
 *
 * B is 0 or 1, N a decimal number, A the PalSandboxAccess mask (1-7), HEX a
 * path as lowercase hex bytes, NAME a syscall name ([a-z0-9_]{1,63}); g,
 * appended by the spawn, is the clone flags the kernel granted in 8 hex
 * digits. The decoder reads this from the child's own environment, which
 * anyone who can exec the child controls: it is bounded (length, counts)
 * and rejects anything else, including duplicate scalars, unknown keys and
 * empty fields.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pal/pal.h>

#include "sandbox-private.h"

struct buf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};

static void buf_add(struct buf *b, const char *s, size_t len)
{
	if (b->failed)
		return;
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		char *p;

		while (cap < b->len + len + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, len);
	b->len += len;
	b->data[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->failed = true;
		return;
	}
	buf_add(b, tmp, (size_t)n);
}

char *sandbox_encode(const PalSandbox *sandbox, bool private_tmp)
{
	static const char hex[] = "0123456789abcdef";
	struct buf b = { 0 };

	buf_printf(&b, "v=1;nnp=%d;caps=%d;tmp=%d;ll=%d;llmin=%d;sc=%d", sandbox->no_new_privs,
		   sandbox->drop_capabilities, private_tmp, sandbox->landlock,
		   sandbox->landlock_min_abi, (int)sandbox->seccomp);
	for (size_t i = 0; i < sandbox->n_paths; i++) {
		const char *path = sandbox->paths[i].path;

		buf_printf(&b, ";p=%u:", sandbox->paths[i].access);
		for (size_t j = 0; path[j]; j++) {
			char pair[2] = { hex[(unsigned char)path[j] >> 4], hex[path[j] & 0xf] };

			buf_add(&b, pair, 2);
		}
	}
	for (size_t i = 0; i < sandbox->n_syscalls; i++) {
		buf_add(&b, ";s=", 3);
		buf_add(&b, sandbox->syscalls[i], strlen(sandbox->syscalls[i]));
	}
	if (b.failed || b.len > SANDBOX_MAX_ENV) {
		free(b.data);
		errno = b.failed ? ENOMEM : E2BIG;
		return NULL;
	}
	return b.data;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* A decimal in [0, @max] spelled without sign, leading zeros or spaces. */
static int parse_uint(const char *s, size_t len, unsigned max, unsigned *ret)
{
	unsigned v = 0;

	if (len == 0 || len > 10 || (len > 1 && s[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		d = (unsigned)(s[i] - '0');
		if (d > max || v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

static int parse_path(PalSandbox *sandbox, const char *s, size_t len)
{
	char path[PATH_MAX];
	unsigned access;
	size_t n;

	if (len < 3 || s[1] != ':' || s[0] < '1' || s[0] > '7')
		return -EINVAL;
	access = (unsigned)(s[0] - '0');
	s += 2;
	len -= 2;
	if (len % 2 != 0 || len / 2 >= sizeof(path))
		return -EINVAL;
	n = len / 2;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);

		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -EINVAL;
		path[i] = (char)(hi << 4 | lo);
	}
	return sandbox_add_path(sandbox, path, n, access) < 0 ? -EINVAL : 0;
}

enum {
	KEY_V,
	KEY_NNP,
	KEY_CAPS,
	KEY_TMP,
	KEY_LL,
	KEY_LLMIN,
	KEY_SC,
	KEY_G,
	_KEY_SCALARS,
};

static const char *const scalar_keys[_KEY_SCALARS] = {
	[KEY_V] = "v", [KEY_NNP] = "nnp", [KEY_CAPS] = "caps", [KEY_TMP] = "tmp",
	[KEY_LL] = "ll", [KEY_LLMIN] = "llmin", [KEY_SC] = "sc", [KEY_G] = "g",
};

static int parse_field(PalSandbox *sandbox, const char *key, size_t klen, const char *val,
		       size_t vlen, bool seen[_KEY_SCALARS], int *granted)
{
	unsigned v;
	int k;

	/* The version comes first: fields of another version mean other things. */
	if (!seen[KEY_V] && !(klen == 1 && key[0] == 'v'))
		return -EINVAL;
	if (klen == 1 && key[0] == 'p')
		return parse_path(sandbox, val, vlen);
	if (klen == 1 && key[0] == 's')
		return sandbox_add_syscall(sandbox, val, vlen) < 0 ? -EINVAL : 0;

	for (k = 0; k < _KEY_SCALARS; k++)
		if (strlen(scalar_keys[k]) == klen && memcmp(scalar_keys[k], key, klen) == 0)
			break;
	if (k == _KEY_SCALARS || seen[k])
		return -EINVAL;
	seen[k] = true;

	if (k == KEY_G) {
		unsigned flags = 0;

		if (vlen != 8)
			return -EINVAL;
		for (size_t i = 0; i < 8; i++) {
			int d = hex_digit(val[i]);

			if (d < 0)
				return -EINVAL;
			flags = flags << 4 | (unsigned)d;
		}
		if (flags & ~(unsigned)sandbox_ns_to_clone(~0U))
			return -EINVAL;
		*granted = (int)flags;
		return 0;
	}

	if (parse_uint(val, vlen, k == KEY_LLMIN ? 65535 : k == KEY_SC ? 2 : 1, &v) < 0)
		return -EINVAL;
	switch (k) {
	case KEY_V:
		return v == 1 ? 0 : -EINVAL;
	case KEY_NNP:
		sandbox->no_new_privs = v;
		break;
	case KEY_CAPS:
		sandbox->drop_capabilities = v;
		break;
	case KEY_TMP:
		sandbox->private_tmp = v;
		break;
	case KEY_LL:
		sandbox->landlock = v;
		break;
	case KEY_LLMIN:
		sandbox->landlock_min_abi = (int)v;
		break;
	case KEY_SC:
		sandbox->seccomp = (PalSandboxSeccomp)v;
		break;
	}
	return 0;
}

int sandbox_decode(const char *value, PalSandbox **ret_sandbox, int *ret_granted)
{
	bool seen[_KEY_SCALARS] = { false };
	PalSandbox *sandbox;
	size_t len = strnlen(value, SANDBOX_MAX_ENV + 1);
	const char *p = value, *end = value + len;
	int granted = 0, r = 0;

	if (len == 0 || len > SANDBOX_MAX_ENV)
		return -EINVAL;
	sandbox = sandbox_alloc();
	if (!sandbox)
		return -ENOMEM;

	while (r == 0) {
		const char *field_end = memchr(p, ';', (size_t)(end - p));
		const char *eq;

		if (!field_end)
			field_end = end;
		eq = memchr(p, '=', (size_t)(field_end - p));
		if (!eq || eq == p)
			r = -EINVAL;
		else
			r = parse_field(sandbox, p, (size_t)(eq - p), eq + 1,
					(size_t)(field_end - eq - 1), seen, &granted);
		if (field_end == end)
			break;
		p = field_end + 1;
	}

	for (int k = 0; r == 0 && k < _KEY_SCALARS; k++)
		if (!seen[k] && k != KEY_G)
			r = -EINVAL;
	if (r == 0 && sandbox->landlock_min_abi > 0 && !sandbox->landlock)
		r = -EINVAL;

	if (r < 0) {
		pal_sandbox_unref(sandbox);
		return r;
	}
	*ret_sandbox = sandbox;
	*ret_granted = granted;
	return 0;
}
