// Typed wrappers over the OpenBLAS CBLAS interface shipped by scipy-openblas32 (its symbols carry a scipy_ prefix).
#pragma once
#include <cblas.h>

namespace fastdyn::blas {

// C (m x n, row-major, ldc) = alpha * op(A) op(B) + beta * C
inline void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) {
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc) {
  scipy_cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}

// Upper triangle of C (n x n, row-major) = alpha * A A^T + beta * C, A (n x k, lda).
inline void syrk(int n, int k, float alpha, const float* a, int lda, float beta, float* c, int ldc) {
  scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
}
inline void syrk(int n, int k, double alpha, const double* a, int lda, double beta, double* c, int ldc) {
  scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
}

// B (m x n, row-major) = L^-1 B for the lower-triangular L (m x m, row-major).
inline void trsm_lower(int m, int n, const float* l, int ldl, float* b, int ldb) {
  scipy_cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, m, n, 1.0f, l, ldl, b, ldb);
}
inline void trsm_lower(int m, int n, const double* l, int ldl, double* b, int ldb) {
  scipy_cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, m, n, 1.0, l, ldl, b, ldb);
}

}  // namespace fastdyn::blas
