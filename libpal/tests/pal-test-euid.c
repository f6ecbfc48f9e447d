/* SPDX-License-Identifier: MIT */
/* Prints "euid N": test-sandbox runs a set-user-ID copy of it. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("euid %u\n", (unsigned)geteuid());
	return 0;
}
