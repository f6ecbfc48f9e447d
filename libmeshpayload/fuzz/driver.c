/* SPDX-License-Identifier: MIT */
/*
 * A standalone driver for LLVMFuzzerTestOneInput targets, used when no fuzzing
 * engine is linked: runs every file given (directories are walked one level),
 * then, with --mutations N, N deterministic mutations of each file (bit flips,
 * byte replacements, truncations, splices of two inputs).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
	uint8_t *data;
	size_t size;
} Input;

static Input *inputs;
static size_t n_inputs;

static void add_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "driver: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	Input in = {0};
	uint8_t buf[4096];
	size_t k;
	while ((k = fread(buf, 1, sizeof(buf), f)) > 0) {
		in.data = realloc(in.data, in.size + k);
		memcpy(in.data + in.size, buf, k);
		in.size += k;
	}
	fclose(f);
	inputs = realloc(inputs, (n_inputs + 1) * sizeof(*inputs));
	inputs[n_inputs++] = in;
}

static void add_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fprintf(stderr, "driver: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	if (!S_ISDIR(st.st_mode)) {
		add_file(path);
		return;
	}
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char full[4096];
		snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
		add_file(full);
	}
	if (d)
		closedir(d);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void mutate_and_run(const Input *in, const Input *other)
{
	size_t size = in->size + 16;
	uint8_t *buf = malloc(size + other->size);
	memcpy(buf, in->data, in->size);
	size = in->size;
	switch (next_random() % 5) {
	case 0: /* flip bits */
		for (int i = 0; i < 3 && size; i++)
			buf[next_random() % size] ^= (uint8_t)(1u << (next_random() % 8));
		break;
	case 1: /* replace a byte with an interesting value */
		if (size) {
			static const uint8_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 0x0f, 0x06, 0x07};
			buf[next_random() % size] = vals[next_random() % sizeof(vals)];
		}
		break;
	case 2: /* truncate */
		if (size)
			size = next_random() % size;
		break;
	case 3: /* splice: our head, their tail */
		if (size && other->size > 1) {
			size_t cut = next_random() % size, from = 1 + next_random() % (other->size - 1);
			memcpy(buf + cut, other->data + from, other->size - from);
			size = cut + other->size - from;
		}
		break;
	default: /* insert random bytes */
		for (int i = 0; i < 4; i++)
			buf[size++] = (uint8_t)next_random();
		break;
	}
	LLVMFuzzerTestOneInput(buf, size);
	free(buf);
}

int main(int argc, char **argv)
{
	unsigned long mutations = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--mutations") == 0 && i + 1 < argc)
			mutations = strtoul(argv[++i], NULL, 10);
		else
			add_path(argv[i]);
	}
	if (n_inputs == 0) {
		fprintf(stderr, "usage: %s [--mutations N] FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < n_inputs; i++)
		LLVMFuzzerTestOneInput(inputs[i].data, inputs[i].size);
	for (size_t i = 0; i < n_inputs; i++)
		for (unsigned long m = 0; m < mutations; m++)
			mutate_and_run(&inputs[i], &inputs[next_random() % n_inputs]);
	printf("driver: %zu inputs, %lu mutations each: ok\n", n_inputs, mutations);
	for (size_t i = 0; i < n_inputs; i++)
		free(inputs[i].data);
	free(inputs);
	return 0;
}
