using System.Text.Json.Serialization;

namespace QanaEdge.Training.Pipeline;

/// <summary>Source-generated JSON (Native-AOT clean) for the training log and reports.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = false)]
[JsonSerializable(typeof(EpochRecord))]
[JsonSerializable(typeof(Dictionary<string, object>))]
[JsonSerializable(typeof(Dictionary<string, double>))]
[JsonSerializable(typeof(double[]))]
[JsonSerializable(typeof(int[][]))]
[JsonSerializable(typeof(Dictionary<string, object>[]))]
[JsonSerializable(typeof(int))]
[JsonSerializable(typeof(string))]
internal partial class TrainingJson : JsonSerializerContext;
