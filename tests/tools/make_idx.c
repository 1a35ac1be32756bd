/* make_idx.c - writes test IDX data sets (to be written). */
int main(void) { return 0; }
