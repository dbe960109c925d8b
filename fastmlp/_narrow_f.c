/* The narrow steps' float instances (see _narrow.h), a unit of their own
 * so that the compiler builds them beside the Cython module's. */
#define FMN_IMPLEMENT 'f'
#define FMP_DECLARATIONS_ONLY
#include "_narrow.h"
