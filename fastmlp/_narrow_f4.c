/* The narrow steps' float instances with chunks of 4 vector(s) (see
 * _narrow.h): a unit of their own, compiled beside the Cython module's. */
#define FMN_IMPLEMENT 'f'
#define FMN_NV 4
#define FMP_DECLARATIONS_ONLY
#include "_narrow.h"
