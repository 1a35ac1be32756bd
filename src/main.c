#include <stdio.h>
int main(void) { puts("dtrain: not built yet"); return 1; }
