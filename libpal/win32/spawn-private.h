/* SPDX-License-Identifier: MIT */
/* Test knobs of the Windows spawn.c; tests link its object to reach them. */
#pragma once

#include <stdbool.h>

/*
 * When true, pal_spawn_run() does not try PROC_THREAD_ATTRIBUTE_JOB_LIST and
 * takes the CREATE_SUSPENDED + AssignProcessToJobObject() path, as on
 * Windows before 10.
 */
extern bool spawn_refuse_job_list;
