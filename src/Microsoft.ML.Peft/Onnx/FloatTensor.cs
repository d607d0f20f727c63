namespace Microsoft.ML.Peft.Onnx;

/// <summary>
/// A float32 tensor in managed memory (row-major): what the ONNX exporter works on. Building the scoring graph with
/// these, not libtorch tensors, is what lets the ONNX Runtime engine load and score a saved stage in a process that
/// never loads libtorch.
/// </summary>
internal sealed class FloatTensor
{
    /// <summary>Wraps <paramref name="data"/> (not copied) as a tensor of <paramref name="shape"/>.</summary>
    public FloatTensor(long[] shape, float[] data)
    {
        long n = 1;
        foreach (long d in shape) n *= d;
        if (n != data.Length)
            throw new ArgumentException(
                $"A tensor of shape [{string.Join(",", shape)}] holds {n} values, not {data.Length}.");
        Shape = shape;
        Data = data;
    }

    /// <summary>The dimensions.</summary>
    public long[] Shape { get; }

    /// <summary>The values, row-major.</summary>
    public float[] Data { get; }

    /// <summary>Rows of a 2-D tensor.</summary>
    public int Rows => (int)Shape[0];

    /// <summary>Columns of a 2-D tensor.</summary>
    public int Columns => (int)Shape[1];

    /// <summary>The shape as text, for messages.</summary>
    public string ShapeText => "[" + string.Join(",", Shape) + "]";

    /// <summary>A deep copy.</summary>
    public FloatTensor Clone() => new((long[])Shape.Clone(), (float[])Data.Clone());

    /// <summary>The transpose of a 2-D tensor (a new tensor).</summary>
    public FloatTensor Transpose()
    {
        Require2D();
        int r = Rows, c = Columns;
        var t = new float[Data.Length];
        for (int i = 0; i < r; i++)
            for (int j = 0; j < c; j++) t[j * r + i] = Data[i * c + j];
        return new FloatTensor([c, r], t);
    }

    /// <summary>
    /// The matrix product of two 2-D tensors, accumulated in double so that merging a low-rank update does not add
    /// rounding libtorch's float32 product would not have.
    /// </summary>
    public static FloatTensor MatMul(FloatTensor a, FloatTensor b)
    {
        a.Require2D(); b.Require2D();
        if (a.Columns != b.Rows)
            throw new ArgumentException($"Cannot multiply {a.ShapeText} by {b.ShapeText}.");
        int n = a.Rows, k = a.Columns, m = b.Columns;
        var result = new float[(long)n * m];
        var row = new double[m];
        for (int i = 0; i < n; i++)
        {
            Array.Clear(row);
            for (int p = 0; p < k; p++)
            {
                double x = a.Data[i * k + p];
                if (x == 0) continue;
                int offset = p * m;
                for (int j = 0; j < m; j++) row[j] += x * b.Data[offset + j];
            }
            for (int j = 0; j < m; j++) result[i * m + j] = (float)row[j];
        }
        return new FloatTensor([n, m], result);
    }

    /// <summary>Adds <paramref name="other"/> · <paramref name="scale"/> in place; shapes must match.</summary>
    public void AddScaled(FloatTensor other, double scale = 1)
    {
        RequireSameShape(other);
        for (int i = 0; i < Data.Length; i++) Data[i] = (float)(Data[i] + scale * other.Data[i]);
    }

    /// <summary>Throws unless <paramref name="other"/> has this tensor's shape.</summary>
    public void RequireSameShape(FloatTensor other, string? name = null)
    {
        if (!Shape.SequenceEqual(other.Shape))
            throw new ArgumentException(
                $"Tensor {(name is null ? "" : $"'{name}' ")}has shape {other.ShapeText}, expected {ShapeText}.");
    }

    private void Require2D()
    {
        if (Shape.Length != 2) throw new InvalidOperationException($"Expected a matrix, got shape {ShapeText}.");
    }
}
