/* checkpoint.c - not written yet. */
typedef int dt_placeholder_;
