// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * replay_main.c - runs LLVMFuzzerTestOneInput over every file of the seed
 * corpus (and of any further directories or files given as arguments), so
 * the corpus is exercised by the normal test suite under gcc (+ASan with
 * --config=asan).  Without arguments the corpus is found through Bazel's
 * runfiles: $TEST_SRCDIR/vmrdma/tests/fuzz/corpus.  An oracle violation
 * aborts, which fails the test.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rx_fuzz.h"

static unsigned nrun;

static int run_file(const char *path)
{
	static unsigned char buf[1 << 20];
	FILE *fp = fopen(path, "rb");
	const char *base = strrchr(path, '/');
	size_t n;

	if (!fp) {
		perror(path);
		return -1;
	}
	n = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	LLVMFuzzerTestOneInput(buf, n);
	printf("%-22s %5zu bytes: records %u frames %u accepted %u actions %u xmits %u "
	       "completions %u (ok %u) bytes written %u\n", base ? base + 1 : path, n, rxf_last_stats.records,
	       rxf_last_stats.frames, rxf_last_stats.accepted, rxf_last_stats.actions,
	       rxf_last_stats.xmits, rxf_last_stats.completions, rxf_last_stats.ok_completions,
	       rxf_last_stats.changed);
	nrun++;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
	struct stat st;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, i;
	DIR *d;
	int rc = 0;

	if (stat(path, &st)) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	d = opendir(path);
	if (!d) {
		perror(path);
		return -1;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		names[n] = malloc(strlen(path) + strlen(de->d_name) + 2);
		sprintf(names[n], "%s/%s", path, de->d_name);
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp);
	for (i = 0; i < n; i++) {
		if (run_file(names[i]))
			rc = -1;
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	char def[4096];
	const char *srcdir = getenv("TEST_SRCDIR");
	int i, rc = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		snprintf(def, sizeof(def), "%s/vmrdma/tests/fuzz/corpus",
			 srcdir ? srcdir : "tests/fuzz/..");
		if (!srcdir)
			snprintf(def, sizeof(def), "tests/fuzz/corpus");
		rc = run_path(def);
	}
	for (i = 1; i < argc; i++)
		if (run_path(argv[i]))
			rc = -1;
	if (!nrun) {
		fprintf(stderr, "no corpus files found\n");
		rc = -1;
	}
	printf("%u passed, %d failed\n", rc ? 0 : nrun, rc ? 1 : 0);
	return rc ? 1 : 0;
}
