using Microsoft.ML.Data;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>Input-column checks shared by every PEFT stage; each error names the column at fault.</summary>
internal static class SchemaChecks
{
    public static DataViewSchema.Column Text(DataViewSchema schema, string name, string option)
    {
        var col = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException(option,
                $"Text column '{name}' (option '{option}') was not found in the input. " +
                $"Columns: {string.Join(", ", schema.Select(c => c.Name))}.");
        if (col.Type is not TextDataViewType)
            throw new ArgumentOutOfRangeException(option,
                $"Column '{name}' (option '{option}') must be Text (string), but is {col.Type}.");
        return col;
    }

    public static DataViewSchema.Column Label(DataViewSchema schema, string name, PeftTask task)
    {
        var col = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException("LabelColumnName",
                $"Label column '{name}' was not found in the input. " +
                $"Columns: {string.Join(", ", schema.Select(c => c.Name))}.");
        if (task == PeftTask.Classification && col.Type is not KeyDataViewType)
            throw new ArgumentOutOfRangeException("LabelColumnName",
                $"Label column '{name}' must be a key type for classification, but is {col.Type}. " +
                $"Add mlContext.Transforms.Conversion.MapValueToKey(\"{name}\") before this stage.");
        if (task == PeftTask.Regression && col.Type != NumberDataViewType.Single
            && col.Type != NumberDataViewType.Double)
            throw new ArgumentOutOfRangeException("LabelColumnName",
                $"Label column '{name}' must be Single or Double for regression, but is {col.Type}.");
        return col;
    }
}
