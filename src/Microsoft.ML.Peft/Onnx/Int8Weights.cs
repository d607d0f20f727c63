namespace Microsoft.ML.Peft.Onnx;

/// <summary>
/// Symmetric per-column int8 quantisation of a [in, out] matrix for <c>MatMulInteger</c>: column j is stored as
/// round(w / s_j) clamped to ±127 with s_j = max|w_·j| / 127 (1 for an all-zero column), as ONNX Runtime's dynamic
/// quantiser does for weights with per-channel scales.
/// </summary>
internal static class Int8Weights
{
    /// <summary>The quantised matrix (row-major bytes, [in, out]) and the column scales [out].</summary>
    public static ((byte[] Bytes, int Rows, int Columns) Weights, FloatTensor Scales) Quantize(FloatTensor matrix)
    {
        int rows = matrix.Rows, columns = matrix.Columns;
        var scales = new float[columns];
        for (int j = 0; j < columns; j++)
        {
            float max = 0;
            for (int i = 0; i < rows; i++) max = Math.Max(max, Math.Abs(matrix.Data[i * columns + j]));
            scales[j] = max == 0 ? 1 : max / 127f;
        }
        var bytes = new byte[matrix.Data.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < columns; j++)
            {
                float q = MathF.Round(matrix.Data[i * columns + j] / scales[j], MidpointRounding.ToEven);
                bytes[i * columns + j] = unchecked((byte)(sbyte)Math.Clamp(q, -127, 127));
            }
        return ((bytes, rows, columns), new FloatTensor([columns], scales));
    }
}
